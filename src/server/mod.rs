//! The tokio layer: binds the SIP UDP/TCP listeners and RTP sockets, drives the sans-IO cores with
//! datagrams and time, and runs one task per call (no thread per call).
//!
//! - [`sip_task`]: one task owns the [`crate::sip::endpoint::Endpoint`]; it reads the UDP socket
//!   and the frames of every TCP connection, fires its timers, sends what it asks to send, and
//!   routes call events to the call tasks.
//! - [`tcp`]: accepts TCP connections and frames their byte streams.
//! - [`call`]: one task per call: SDP, SIP INFO digits, and the IVR state machine with its store
//!   look-ups.
//! - [`media_engine`]: one task per core carries the RTP of all calls from one timer wheel:
//!   playout paced by a drift-free clock, RFC 4733 and in-band digits, inactivity.

pub mod call;
pub mod media_engine;
pub mod precise_timer;
pub mod prompts;
pub mod resync;
pub mod rtp_ports;
pub mod settings;
pub mod sip_task;
pub mod tcp;
pub mod udp_batch;

use crate::config::{Config, LogConfig};
use crate::store::Store;
use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};

pub fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    // Colour only for a terminal: log files and journald get plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What every call task shares: read-only after start-up.
pub struct Services {
    pub config: Config,
    pub store: Store,
    /// The language packs in service (a call keeps the ones it started with).
    pub prompts: prompts::Prompts,
    pub rtp_ports: rtp_ports::RtpPorts,
    /// The tasks that carry every call's RTP.
    pub media: media_engine::MediaEngines,
    /// The self-provisioning settings, kept current from the store.
    pub settings: tokio::sync::watch::Receiver<Arc<settings::IvrRuntime>>,
    /// The address put in SDP `c=` lines when the listen address is a wildcard and no
    /// `sip.public_address` is set: the local address that routes to the caller is used instead.
    pub media_ip: Option<IpAddr>,
    /// Asks the resync task to send a device its resync NOTIFY.
    pub resync: resync::ResyncSender,
}

impl Services {
    /// The settings a new call starts with.
    pub fn current_settings(&self) -> Arc<settings::IvrRuntime> {
        self.settings.borrow().clone()
    }
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Created now: its process start time is the server's.
    let _ = crate::metrics::global();
    let store = Store::open(&config.store.url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {} (config key store.url)",
                config.store.url
            )
        })?
        .with_pbx_connectors(config.pbx.iter().map(|p| p.name.clone()).collect())
        .with_registration_watch(config.pbx.iter().any(|p| p.watch_registrations));
    let pbxs: Vec<Arc<crate::pbx::Pbx>> = crate::pbx::connectors(&config.pbx)
        .map_err(|e| anyhow::anyhow!(e))?
        .into_iter()
        .map(Arc::new)
        .collect();
    settings::apply_config(&store, &config.ivr).await?;
    let settings = settings::watch(store.clone()).await?;
    let languages = settings.borrow().languages.clone();
    let prompts = prompts::Prompts::load(
        config.langpacks.dir.clone(),
        config.langpacks.catalogue.clone(),
        languages,
    )
    .await?;
    tracing::info!(
        packs = %prompts::summary(&prompts.current()),
        "prompts loaded and encoded"
    );

    let (udp, tcp) = bind_sip(config.sip.listen).await?;
    let local = udp.local_addr()?;
    let media_ip = config
        .sip
        .public_address
        .or((!local.ip().is_unspecified()).then_some(local.ip()));
    let advertised = SocketAddr::new(media_ip.unwrap_or_else(default_route_ip), local.port());
    if media_ip.is_none() {
        tracing::warn!(
            address = %advertised.ip(),
            "sip.listen is a wildcard and sip.public_address is not set: using {} in Contact headers; \
             set sip.public_address if phones cannot reach it",
            advertised.ip()
        );
    }

    let (resync_tx, resync_rx) = tokio::sync::mpsc::unbounded_channel();
    let services = Arc::new(Services {
        rtp_ports: rtp_ports::RtpPorts::new(local.ip(), config.rtp.port_min, config.rtp.port_max),
        media: media_engine::MediaEngines::per_core(config.rtp.realtime_priority),
        config,
        store,
        settings,
        prompts,
        media_ip,
        resync: resync_tx,
    });
    let (sip_cmd_tx, sip_cmd_rx) = sip_task::channel();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();

    let http = TcpListener::bind(services.config.http.listen)
        .await
        .with_context(|| {
            format!(
                "binding the admin API on {} (config key http.listen; port 0 picks a free port)",
                services.config.http.listen
            )
        })?;
    let http_addr = http.local_addr()?;
    let api = tokio::spawn(crate::api::serve(
        http,
        crate::api::ApiState::new(services.store.clone())
            .with_resync(services.resync.clone())
            .with_reload(reload_tx)
            .with_pbx(pbxs.clone())
            .with_langpacks(services.config.langpacks.dir.clone()),
    ));

    let prov_listener = TcpListener::bind(services.config.provisioning.http_listen)
        .await
        .with_context(|| {
            format!(
                "binding the provisioning server on {} (config key provisioning.http_listen; \
                 port 0 picks a free port)",
                services.config.provisioning.http_listen
            )
        })?;
    let prov_addr = prov_listener.local_addr()?;
    let prov_state = provisioning_state(&services, advertised, prov_addr)?;
    // TFTP (off unless provisioning.tftp_listen is set) serves the same files and decisions.
    let tftp = match services.config.provisioning.tftp_listen {
        Some(listen) => {
            let socket = UdpSocket::bind(listen).await.with_context(|| {
                format!(
                    "binding the provisioning TFTP server on {listen} (config key \
                     provisioning.tftp_listen; port 69 needs root or CAP_NET_BIND_SERVICE, port \
                     0 picks a free port)"
                )
            })?;
            let addr = socket.local_addr()?;
            let task = tokio::spawn(crate::phoneprov::tftp::serve(
                socket,
                prov_state.clone(),
                crate::phoneprov::tftp::Limits::default(),
            ));
            Some((addr, task))
        }
        None => None,
    };
    let prov = tokio::spawn(crate::phoneprov::serve::serve(prov_listener, prov_state));

    // The lines tests and scripts wait for (the SIP line last: it means ready); logs go to
    // stderr.
    println!("API listening on http://{http_addr}/api/v1");
    println!("Provisioning listening on http://{prov_addr}/");
    let tftp = tftp.map(|(addr, task)| {
        println!("TFTP listening on {addr}");
        task
    });
    let tftp = async move {
        match tftp {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    println!("SIP listening on {local} (udp+tcp)");
    tracing::info!(%local, %advertised, "SIP listening (udp+tcp)");

    tokio::spawn(resync::run(services.clone(), sip_cmd_tx.clone(), resync_rx));
    for p in &pbxs {
        tracing::info!(connector = p.name(), kind = p.config.kind.as_str(), registrar = %p.config.registrar, "PBX connector started");
    }
    let _pbx_workers = crate::pbx::worker::spawn_all(&pbxs, &services.store);
    tokio::spawn(reload_loop(services.clone(), reload_rx));
    let sip = tokio::spawn(sip_task::run(
        services.clone(),
        udp,
        tcp,
        advertised,
        sip_cmd_tx,
        sip_cmd_rx,
    ));
    tokio::select! {
        r = sip => {
            r.context("SIP task panicked")??;
        }
        r = api => {
            r.context("API task panicked")??;
            anyhow::bail!("the admin API stopped");
        }
        r = prov => {
            r.context("provisioning server task panicked")??;
            anyhow::bail!("the provisioning server stopped");
        }
        r = tftp => {
            r.context("provisioning TFTP task panicked")??;
            anyhow::bail!("the provisioning TFTP server stopped");
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
        }
    }
    Ok(())
}

/// What `serve` checks before it binds a socket, run without serving (`selfprov config check`):
/// the PBX connectors, the phone template overrides, the self-provisioning settings as `serve`
/// would start with them (the store's, when it exists, with the config file's `[ivr]` keys
/// applied; nothing is written) and every language pack they name, decoded as `serve` decodes
/// them. Returns a line per check for the caller to print.
pub async fn preflight(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let pbxs = crate::pbx::connectors(&config.pbx)
        .map_err(|e| anyhow::anyhow!("config key `pbx`: {e}"))?;
    done.push(format!("PBX connectors: {}", pbxs.len()));
    crate::phoneprov::Renderer::with_overrides(config.provisioning.templates_dir.as_deref())
        .with_context(|| {
            format!(
                "loading the phone config templates (config key provisioning.templates_dir = {:?})",
                config.provisioning.templates_dir
            )
        })?;
    done.push("phone config templates: OK".into());
    let url = &config.store.url;
    let existing = match url.strip_prefix("sqlite://") {
        Some(path) if !path.starts_with(":memory:") => std::path::Path::new(path).exists(),
        Some(_) => false,
        None => !url.starts_with("sqlite:"),
    };
    let stored = if existing {
        let store = Store::open(url)
            .await
            .with_context(|| format!("opening the store at {url} (config key store.url)"))?;
        let s = store
            .get_settings()
            .await
            .context("reading the self-provisioning settings")?;
        store.close().await;
        done.push(format!("store: {} ({url})", store.backend_name()));
        s
    } else {
        done.push(format!("store: none yet at {url} (created on first start)"));
        crate::store::SelfProvSettings::default()
    };
    let (merged, _) = settings::merge_config(stored, &config.ivr).await?;
    settings::IvrRuntime::from_stored(&merged)?;
    let prompts = prompts::Prompts::load(
        config.langpacks.dir.clone(),
        config.langpacks.catalogue.clone(),
        merged.languages.clone(),
    )
    .await?;
    done.push(format!(
        "language packs: {}",
        prompts::summary(&prompts.current())
    ));
    Ok(done)
}

/// Reloads the language packs on SIGHUP, on an API request, and when the stored languages
/// change. A failed reload is logged (and answered to the API) and the packs in service stay.
async fn reload_loop(
    services: Arc<Services>,
    mut api: tokio::sync::mpsc::UnboundedReceiver<prompts::ReloadRequest>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut settings = services.settings.clone();
    let mut languages = settings.borrow().languages.clone();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        let (why, reply) = tokio::select! {
            Some(()) = sighup => ("SIGHUP", None),
            Some(reply) = api.recv() => ("API request", Some(reply)),
            Ok(()) = settings.changed() => {
                let now = settings.borrow_and_update().languages.clone();
                if now == languages {
                    continue;
                }
                languages = now;
                ("the stored languages changed", None)
            }
            else => return,
        };
        let tags = settings.borrow().languages.clone();
        let result = services
            .prompts
            .reload(tags)
            .await
            .map_err(|e| format!("{e:#}"));
        crate::metrics::global().langpack_reload(result.is_ok());
        match &result {
            Ok(summary) => {
                tracing::info!(reason = why, packs = %summary, "language packs reloaded")
            }
            Err(e) => tracing::error!(
                reason = why,
                error = %e,
                "language pack reload refused; the packs in service stay. Fix the pack (`selfprov \
                 langpack check DIR`) and reload again"
            ),
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// The provisioning server's state: templates (with the admin's overrides), selfprov's SIP
/// address for guest configs, and the base URL phones are pointed at.
fn provisioning_state(
    services: &Services,
    advertised: SocketAddr,
    prov_addr: SocketAddr,
) -> anyhow::Result<crate::phoneprov::serve::ProvState> {
    use crate::phoneprov::serve::{ProvSettings, ProvState};
    use crate::phoneprov::{Renderer, SipServer};
    let cfg = &services.config.provisioning;
    let renderer = Renderer::with_overrides(cfg.templates_dir.as_deref()).with_context(|| {
        format!(
            "loading the phone config templates (config key provisioning.templates_dir = {:?})",
            cfg.templates_dir
        )
    })?;
    let public_url = match &cfg.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let ip = if prov_addr.ip().is_unspecified() {
                advertised.ip()
            } else {
                prov_addr.ip()
            };
            format!("http://{}", SocketAddr::new(ip, prov_addr.port()))
        }
    };
    let settings = ProvSettings {
        server: SipServer {
            host: advertised.ip().to_string(),
            port: advertised.port(),
            transport: crate::store::Transport::Udp,
            pbx: crate::pbx::line_registrar(&services.config.pbx),
        },
        public_url,
        file_auth: cfg.file_auth,
        unknown_mac_per_minute: cfg.unknown_mac_per_minute,
        realm: services.config.registrar.realm.clone(),
    };
    Ok(ProvState::new(
        services.store.clone(),
        Arc::new(renderer),
        settings,
    ))
}

/// Binds UDP and TCP on the same address. With port 0, picks a port free for both.
async fn bind_sip(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let hint =
        "set sip.listen to a free address, e.g. \"0.0.0.0:5060\" (ports below 1024 need root)";
    if listen.port() != 0 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding SIP UDP {listen}: {hint}"))?;
        let tcp = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding SIP TCP {listen}: {hint}"))?;
        return Ok((udp, tcp));
    }
    for _ in 0..50 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding SIP UDP {listen}: {hint}"))?;
        let addr = udp.local_addr()?;
        if let Ok(tcp) = TcpListener::bind(addr).await {
            return Ok((udp, tcp));
        }
    }
    anyhow::bail!(
        "no port free for both UDP and TCP on {}: {hint}",
        listen.ip()
    )
}

/// The local address of the default route. A UDP `connect` only consults the routing table; no
/// packet is sent. 192.0.2.1 is TEST-NET-1 (RFC 5737). Falls back to loopback.
fn default_route_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The local address that routes to `peer` (used in SDP when listening on a wildcard).
pub fn local_ip_towards(peer: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(bind).ok()?;
    s.connect(SocketAddr::new(peer, 9)).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
