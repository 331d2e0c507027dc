//! One task per call: answers the SDP offer, hands the call's RTP socket and agreed media to the
//! media engine ([`super::media_engine`], which paces playout and detects RFC 4733 and in-band
//! digits), takes SIP INFO digits, and drives the IVR state machine, running its store look-ups
//! and secret checks off the call's own loop. The task wakes for SIP events, digits, the end of
//! a prompt and IVR timers, never per packet.

use super::media_engine::MediaHandle;
use super::sip_task::SipCommand;
use super::Services;
use crate::config::AuthMode;
use crate::ivr::{
    self, Action, AuthMethod, AuthOutcome, CallAction, Event, Ivr, IvrSettings, Language,
    LanguageOptions, ProvisionError, UserInfo,
};
use crate::media::dtmf::info::parse_info_body;
use crate::media::g711::Codec;
use crate::media::sdp::{self, LocalMedia, Negotiated};
use crate::media::session::{DigitSource, MediaEvent, MediaParams};
use crate::metrics::{self, CallOutcome, DtmfMethod, ProvisioningResult};
use crate::provisioning::identify::{identify, DeviceIdentity};
use crate::sip::endpoint::{CallEvent, CallId, EndReason, Peer};
use crate::sip::message::Request;
use crate::store::{AuditOutcome, StoreError};
use bytes::Bytes;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

/// The call task's link to the SIP task.
pub struct CallHandle {
    pub id: CallId,
    pub commands: mpsc::UnboundedSender<SipCommand>,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
}

impl CallHandle {
    fn send(&self, cmd: SipCommand) {
        // The SIP task outlives every call; a send error only happens at shutdown.
        let _ = self.commands.send(cmd);
    }
}

/// Codecs we offer/accept, in our order of preference for a late offer.
const CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// telephone-event payload type we offer when we make the offer.
const OFFER_TE_PT: u8 = 101;
/// How long after our BYE we wait for the SIP layer to report the end (timer F is 32 s).
const HANGUP_WAIT: Duration = Duration::from_secs(40);

pub async fn run(
    services: Arc<Services>,
    handle: CallHandle,
    invite: Request,
    offer: Option<Bytes>,
    source: Peer,
    account: Option<i64>,
) {
    let call_id = invite.call_id().unwrap_or("-").to_string();
    let span = tracing::info_span!("call", call_id = %call_id, peer = %source.addr);
    async move {
        let mut identity = identify(&invite);
        if let Some(account) = account {
            account_identity(&services, account, &mut identity).await;
        }
        tracing::info!(
            mac = identity.mac.as_deref().unwrap_or("-"),
            vendor = identity.vendor.as_deref().unwrap_or("-"),
            model = identity.model.as_deref().unwrap_or("-"),
            identity = %identity.sip_identity,
            account = account.unwrap_or(0),
            "incoming IVR call"
        );
        let resync = services.resync.clone();
        let mut call = match Call::answer(services, handle, offer, source, identity).await {
            Some(c) => c,
            None => return,
        };
        let active = metrics::global().call_active();
        call.run().await;
        drop(active);
        metrics::global().call_ended(call.outcome.unwrap_or(CallOutcome::NotEstablished));
        // The phone is told to resync once the call is over (a reboot mid-call would cut the
        // closing prompt).
        let bound = call.bound_device.load(Ordering::Acquire);
        if bound > 0 && resync.send(bound).is_err() {
            tracing::warn!(
                device = bound,
                "the resync task has stopped; the phone was not told to resync"
            );
        }
    }
    .instrument(span)
    .await
}

struct Call {
    services: Arc<Services>,
    /// The self-provisioning settings as they were when the call arrived.
    settings: Arc<super::settings::IvrRuntime>,
    handle: CallHandle,
    identity: DeviceIdentity,
    /// The RTP socket until the media engine takes it (when the call is confirmed).
    socket: Option<UdpSocket>,
    local: LocalMedia,
    /// Set once media is agreed (at once for an offer in the INVITE, at the ACK for a late offer).
    media: Option<Negotiated>,
    /// Our late offer, kept to check the answer in the ACK.
    late_offer: bool,
    /// The SDP we sent last, to tell a session refresh from a change.
    last_sdp: Option<String>,
    results_tx: mpsc::UnboundedSender<Event>,
    results_rx: mpsc::UnboundedReceiver<Event>,
    /// The device bound during the call (0: none yet): told to resync when the call ends.
    bound_device: Arc<AtomicI64>,
    /// How the IVR dialogue ended; None: it never started (the call was not established).
    outcome: Option<CallOutcome>,
}

impl Call {
    /// Negotiates SDP, binds the RTP socket and sends the 200 (or the rejection).
    async fn answer(
        services: Arc<Services>,
        handle: CallHandle,
        offer: Option<Bytes>,
        source: Peer,
        identity: DeviceIdentity,
    ) -> Option<Call> {
        let Some(socket) = services.rtp_ports.allocate() else {
            tracing::error!(
                "no free RTP port in rtp.port_min..rtp.port_max; widen the range or lower the call load"
            );
            handle.send(SipCommand::Reject {
                call: handle.id,
                status: 503,
            });
            return None;
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let ip: IpAddr = services
            .media_ip
            .or_else(|| super::local_ip_towards(source.addr.ip()))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let local = LocalMedia {
            addr: ip,
            port,
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
        };
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let mut call = Call {
            settings: services.current_settings(),
            services,
            handle,
            identity,
            socket: Some(socket),
            local,
            media: None,
            late_offer: offer.is_none(),
            last_sdp: None,
            results_tx,
            results_rx,
            bound_device: Arc::new(AtomicI64::new(0)),
            outcome: None,
        };
        let sdp_body = match offer {
            Some(offer) => match call.negotiate_offer(&offer) {
                Ok(answer) => answer,
                Err(status) => {
                    call.handle.send(SipCommand::Reject {
                        call: call.handle.id,
                        status,
                    });
                    return None;
                }
            },
            None => call.versioned_sdp(|local| sdp::build_offer(local, &CODECS, OFFER_TE_PT, 20)),
        };
        call.handle.send(SipCommand::Accept {
            call: call.handle.id,
            sdp: Bytes::from(sdp_body),
        });
        Some(call)
    }

    /// Answers an offer (initial or re-INVITE). Err is the SIP status to reject with.
    fn negotiate_offer(&mut self, offer: &[u8]) -> Result<String, u16> {
        let remote = sdp::parse_remote(offer).map_err(|e| {
            tracing::warn!(error = %e, "unusable SDP offer");
            e.sip_status()
        })?;
        let neg = sdp::negotiate(&remote, &CODECS).map_err(|e| {
            tracing::warn!(error = %e, "cannot answer the caller's SDP offer");
            e.sip_status()
        })?;
        let answer = self.versioned_sdp(|local| sdp::build_answer(local, &neg));
        self.apply_media(neg);
        Ok(answer)
    }

    /// Builds our SDP with the right `o=` version: RFC 3264 §8, a changed SDP carries the next
    /// session version; an unchanged one (a session refresh) keeps it.
    fn versioned_sdp(&mut self, build: impl Fn(&LocalMedia) -> String) -> String {
        let mut sdp = build(&self.local);
        if self.last_sdp.as_deref().is_some_and(|last| last != sdp) {
            self.local.session_version += 1;
            sdp = build(&self.local);
        }
        self.last_sdp = Some(sdp.clone());
        sdp
    }

    fn apply_media(&mut self, neg: Negotiated) {
        tracing::info!(
            codec = neg.codec.name(),
            telephone_event = ?neg.te_pt(),
            ptime = neg.ptime,
            remote = ?neg.remote_rtp,
            direction = neg.direction.as_str(),
            "media negotiated"
        );
        self.media = Some(neg);
    }

    /// Waits for the ACK, then runs the IVR until the call ends.
    async fn run(&mut self) {
        // Wait for the ACK (the SIP layer gives up after timer H and reports Ended).
        loop {
            match self.handle.events.recv().await {
                Some(CallEvent::Confirmed { answer }) => {
                    if self.late_offer {
                        let Some(answer) = answer else {
                            tracing::warn!("ACK carried no SDP answer to our offer; hanging up");
                            self.hangup_and_wait().await;
                            return;
                        };
                        let neg = sdp::parse_remote(&answer)
                            .map_err(|e| e.to_string())
                            .and_then(|r| {
                                sdp::negotiate_answer(&r, &CODECS, OFFER_TE_PT)
                                    .map_err(|e| e.to_string())
                            });
                        match neg {
                            Ok(n) => self.apply_media(n),
                            Err(e) => {
                                tracing::warn!(error = %e, "unusable SDP answer in ACK; hanging up");
                                self.hangup_and_wait().await;
                                return;
                            }
                        }
                    }
                    break;
                }
                Some(CallEvent::Ended { reason }) => {
                    tracing::info!(?reason, "call ended before it was confirmed");
                    return;
                }
                Some(CallEvent::Cancelled) => {
                    tracing::info!("caller cancelled before answer");
                }
                Some(_) => {}
                None => return,
            }
        }
        self.media_loop().await;
    }

    async fn hangup_and_wait(&mut self) {
        self.handle.send(SipCommand::Hangup {
            call: self.handle.id,
        });
        let deadline = Instant::now() + HANGUP_WAIT;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.handle.events.recv()).await
        {
            if let CallEvent::Ended { .. } = ev {
                return;
            }
        }
    }

    async fn media_loop(&mut self) {
        let Some(media) = self.media.clone() else {
            return;
        };
        let Some(socket) = self.socket.take() else {
            return;
        };
        let cfg = &self.services.config;
        let settings = IvrSettings {
            auth_mode: self.settings.auth_mode,
            first_digit_timeout: cfg.ivr.first_digit_timeout(),
            inter_digit_timeout: cfg.ivr.inter_digit_timeout(),
            max_attempts: cfg.ivr.max_attempts,
            max_digits: 20,
        };
        let inactivity = Duration::from_millis(cfg.rtp.inactivity_timeout_ms);
        // The packs in service now: kept for the whole call, whatever a reload does meanwhile.
        let sets = self.services.prompts.current();
        let languages: Vec<Language> = sets
            .iter()
            .map(|s| Language::new(s.language.clone(), s.readback()))
            .collect();
        let preset = self.preset_language().await;
        let mut ivr =
            match Ivr::with_languages(settings.clone(), LanguageOptions { languages, preset }) {
                Ok(ivr) => ivr,
                Err(e) => {
                    tracing::warn!(error = %e, "language list unusable; the default language only");
                    Ivr::new(settings)
                }
            };
        let mut lang = sets.default_set();
        let (media_tx, mut media_rx) = mpsc::unbounded_channel();
        // Dropped (session ended, socket closed) when the IVR hangs up or the call ends.
        let mut rtp: Option<MediaHandle> = Some(self.services.media.add(
            socket,
            media_params(&media),
            inactivity,
            media_tx,
        ));
        // Each queue given to the engine has a generation: the end of a queue already replaced
        // (the engine reported it while the new one was on its way) is not the end of this one.
        let mut generation = 0u64;
        let mut ivr_deadline: Option<Instant> = None;
        let ivr_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(ivr_timer);
        let mut ivr_armed: Option<Instant> = None;
        let mut hangup_at: Option<Instant> = None;
        let hangup_timer = tokio::time::sleep_until(Instant::now() + HANGUP_WAIT);
        tokio::pin!(hangup_timer);

        let mut actions = ivr.handle_call(Event::Start);
        loop {
            // Apply what the IVR asked for.
            for action in actions.drain(..) {
                let action = match action {
                    CallAction::Ivr(a) => a,
                    CallAction::SetLanguage(tag) => {
                        match sets.get(&tag) {
                            Some(s) => {
                                tracing::info!(language = %tag, "caller's language");
                                lang = s;
                            }
                            None => {
                                tracing::error!(language = %tag, "no pack for the chosen language")
                            }
                        }
                        continue;
                    }
                    CallAction::PlayMixed(list) => {
                        generation += 1;
                        if let Some(rtp) = &rtp {
                            rtp.play(
                                list.iter()
                                    .filter_map(|(tag, id)| sets.prompt(tag, id))
                                    .collect(),
                                generation,
                            );
                        }
                        continue;
                    }
                };
                match action {
                    Action::Play(ids) => {
                        let prompts = ids
                            .iter()
                            .filter_map(|id| {
                                let p = lang.get(id);
                                if p.is_none() {
                                    tracing::error!(
                                        prompt = id,
                                        "prompt missing from the language pack"
                                    );
                                }
                                p
                            })
                            .collect();
                        generation += 1;
                        if let Some(rtp) = &rtp {
                            rtp.play(prompts, generation);
                        }
                    }
                    Action::StopPlayback => {
                        generation += 1;
                        if let Some(rtp) = &rtp {
                            rtp.stop();
                        }
                    }
                    Action::StartTimer(d) => ivr_deadline = Some(Instant::now() + d),
                    Action::CancelTimer => ivr_deadline = None,
                    Action::LookupUser { digits } => self.lookup_user(digits),
                    Action::Authenticate { user_id, digits } => self.authenticate(user_id, digits),
                    Action::Provision { user_id, auth } => self.provision(user_id, auth),
                    Action::HangUp => {
                        if hangup_at.is_none() {
                            tracing::info!(outcome = ?ivr.outcome(), "IVR done; hanging up");
                            self.handle.send(SipCommand::Hangup {
                                call: self.handle.id,
                            });
                            let now = Instant::now();
                            hangup_at = Some(now);
                            hangup_timer.as_mut().reset(now + HANGUP_WAIT);
                            // No more media once we have said goodbye.
                            rtp = None;
                        }
                    }
                }
            }

            // The IVR timer is re-armed in place (one wheel entry for the whole call).
            if let Some(d) = ivr_deadline {
                if ivr_armed != Some(d) {
                    ivr_timer.as_mut().reset(d);
                    ivr_armed = Some(d);
                }
            } else {
                ivr_armed = None;
            }
            tokio::select! {
                biased;
                ev = self.handle.events.recv() => {
                    match ev {
                        Some(CallEvent::Info { content_type, body }) => {
                            if let Some(d) = parse_info_body(&content_type, &body) {
                                tracing::debug!("DTMF via SIP INFO");
                                metrics::global().dtmf_digit(DtmfMethod::Info);
                                actions = ivr.handle_call(Event::Digit(d));
                            }
                        }
                        Some(CallEvent::ReInvite { offer }) => {
                            self.reinvite(offer);
                            if let (Some(rtp), Some(media)) = (&rtp, &self.media) {
                                rtp.update(media_params(media));
                            }
                        }
                        // The ACK of a re-INVITE we answered with an offer carries the answer.
                        Some(CallEvent::Confirmed { answer: Some(answer) }) => {
                            let Some(current) = self.media.clone() else { continue };
                            match sdp::parse_remote(&answer)
                                .and_then(|r| sdp::negotiate_answer(&r, &[current.codec], current.te_pt().unwrap_or(OFFER_TE_PT)))
                            {
                                Ok(n) => {
                                    if let Some(rtp) = &rtp {
                                        rtp.update(media_params(&n));
                                    }
                                    self.apply_media(n);
                                }
                                Err(e) => tracing::warn!(error = %e, "unusable SDP answer in the re-INVITE's ACK; keeping the current media"),
                            }
                        }
                        Some(CallEvent::Ended { reason }) => {
                            self.finish(&mut ivr, reason).await;
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                Some(ev) = self.results_rx.recv() => {
                    actions = ivr.handle_call(ev);
                }
                Some(ev) = media_rx.recv(), if rtp.is_some() => {
                    match ev {
                        MediaEvent::Digit(d, source) => {
                            let method = match source {
                                DigitSource::Rfc4733 => {
                                    tracing::debug!("DTMF via RFC 4733");
                                    DtmfMethod::Rfc4733
                                }
                                DigitSource::Inband => {
                                    tracing::debug!("DTMF in-band");
                                    DtmfMethod::Inband
                                }
                            };
                            metrics::global().dtmf_digit(method);
                            actions = ivr.handle_call(Event::Digit(d));
                        }
                        MediaEvent::PlaybackFinished { generation: g } => {
                            if g == generation {
                                actions = ivr.handle_call(Event::PlaybackFinished);
                            }
                        }
                        MediaEvent::Inactive => {
                            tracing::warn!(seconds = inactivity.as_secs(), "no RTP from the caller; hanging up (rtp.inactivity_timeout_ms)");
                            actions = ivr.handle_call(Event::HangUp);
                            actions.push(CallAction::Ivr(Action::HangUp));
                        }
                        MediaEvent::Latched(_) => {}
                    }
                }
                _ = &mut ivr_timer, if ivr_armed.is_some() => {
                    ivr_deadline = None;
                    ivr_armed = None;
                    actions = ivr.handle_call(Event::Timeout);
                }
                _ = &mut hangup_timer, if hangup_at.is_some() => {
                    tracing::warn!("no end of call reported after BYE; dropping the call");
                    break;
                }
            }
        }
        self.outcome = Some(CallOutcome::of(ivr.outcome().as_ref()));
    }

    /// Answers a re-INVITE (hold, resume, session refresh, codec change); `self.media` holds
    /// the result for the media engine.
    fn reinvite(&mut self, offer: Option<Bytes>) {
        let result = match (offer, self.media.clone()) {
            (Some(offer), _) => self.negotiate_offer(&offer),
            // A re-INVITE without SDP asks us to offer (RFC 3264 §8); we re-offer what is in use.
            (None, Some(media)) => {
                let (codec, te, ptime) = (
                    media.codec,
                    media.te_pt().unwrap_or(OFFER_TE_PT),
                    media.ptime,
                );
                Ok(self.versioned_sdp(|local| sdp::build_offer(local, &[codec], te, ptime)))
            }
            (None, None) => Err(500),
        };
        match result {
            Ok(body) => self.handle.send(SipCommand::AcceptReinvite {
                call: self.handle.id,
                sdp: Bytes::from(body),
            }),
            Err(status) => self.handle.send(SipCommand::RejectReinvite {
                call: self.handle.id,
                status,
            }),
        }
    }

    async fn finish(&mut self, ivr: &mut Ivr, reason: EndReason) {
        if !ivr.is_finished() {
            let _ = ivr.handle_call(Event::HangUp);
        }
        let outcome = ivr.outcome();
        tracing::info!(?reason, ?outcome, "call ended");
        // Refusals inside the binding are audited by the store itself; what ends the call
        // before it is recorded here. Never with the digits typed.
        let audit = match &outcome {
            Some(ivr::Outcome::Failed(ivr::FailReason::TooManyAttempts)) => Some((
                AuditOutcome::TooManyAttempts,
                "too many unsuccessful attempts",
            )),
            Some(ivr::Outcome::Failed(ivr::FailReason::SelfProvDisabled)) => Some((
                AuditOutcome::UserDisabled,
                "self-provisioning is disabled for the user",
            )),
            Some(ivr::Outcome::Failed(ivr::FailReason::NoExtension)) => {
                Some((AuditOutcome::Error, "the user has no extension"))
            }
            Some(ivr::Outcome::HungUp) | None => {
                Some((AuditOutcome::Abandoned, "the caller hung up before the end"))
            }
            Some(ivr::Outcome::Failed(ivr::FailReason::Provisioning(_)))
            | Some(ivr::Outcome::Provisioned { .. })
            | Some(ivr::Outcome::Cancelled) => None,
        };
        if let Some((outcome, detail)) = audit {
            record_audit(
                &self.services.store,
                &self.identity,
                None,
                None,
                outcome,
                detail,
            )
            .await;
        }
    }

    fn lookup_user(&self, digits: String) {
        let store = self.services.store.clone();
        let tx = self.results_tx.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let user = match store.find_user_for_ivr(&digits).await {
                Ok(u) => u.map(|u| UserInfo {
                    user_id: u.user_id,
                    extension: u.extension,
                    selfprov_enabled: u.selfprov_enabled,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "user look-up failed");
                    None
                }
            };
            let unknown = user.is_none();
            let _ = tx.send(Event::UserLookup(user));
            if unknown {
                tracing::info!("no user matches the ID entered");
                record_audit(
                    &store,
                    &identity,
                    None,
                    None,
                    AuditOutcome::UnknownUser,
                    "no user matches the ID entered",
                )
                .await;
            }
        });
    }

    fn authenticate(&self, user_id: String, digits: String) {
        let store = self.services.store.clone();
        let tx = self.results_tx.clone();
        let mode = self.settings.auth_mode;
        let admin_code = self.settings.admin_code_hash.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let pin_hash = match store.get_user(user_id.as_str()).await {
                Ok(Some(u)) => u.pin_hash,
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "user look-up for authentication failed");
                    None
                }
            };
            let has_pin = pin_hash.is_some();
            // argon2 is deliberately slow: on the low-priority hashing threads, off the
            // async workers and behind the media.
            let outcome = crate::provisioning::secret::run_hashing(move || {
                use crate::provisioning::secret::verify_secret;
                if pin_hash
                    .as_deref()
                    .is_some_and(|h| verify_secret(h, &digits))
                {
                    AuthOutcome::User
                } else if mode == AuthMode::SecureUsersAndAdmins
                    && admin_code
                        .as_deref()
                        .is_some_and(|h| verify_secret(h, &digits))
                {
                    AuthOutcome::Admin
                } else {
                    AuthOutcome::Failed
                }
            })
            .await
            .unwrap_or(AuthOutcome::Failed);
            let _ = tx.send(Event::AuthResult(outcome));
            if outcome == AuthOutcome::Failed {
                tracing::info!(user = %user_id, "wrong PIN or admin code");
                let what = if mode == AuthMode::SecureUsersAndAdmins {
                    "wrong PIN or admin code"
                } else {
                    "wrong PIN"
                };
                let (audit, detail) = if has_pin || mode == AuthMode::SecureUsersAndAdmins {
                    (AuditOutcome::BadPin, what)
                } else {
                    (AuditOutcome::NoPin, "the user has no PIN")
                };
                record_audit(
                    &store,
                    &identity,
                    Some(&user_id),
                    Some(AuthMethod::Pin),
                    audit,
                    detail,
                )
                .await;
            }
        });
    }

    fn provision(&self, user_id: String, auth: AuthMethod) {
        let store = self.services.store.clone();
        let tx = self.results_tx.clone();
        let identity = self.identity.clone();
        let bound = self.bound_device.clone();
        let span = tracing::info_span!("provisioning", user = %user_id);
        tokio::spawn(
            async move {
                let started = std::time::Instant::now();
                let bind = store.bind_device(&identity, &user_id, auth).await;
                let took = started.elapsed();
                metrics::global().binding(took);
                let result = match bind {
                    Ok(device) => {
                        tracing::info!(
                            device = device.id,
                            took_ms = took.as_secs_f64() * 1e3,
                            "phone bound to user"
                        );
                        bound.store(device.id, Ordering::Release);
                        metrics::global().provisioning(ProvisioningResult::Bound);
                        Ok(())
                    }
                    Err(e @ StoreError::AlreadyBound { .. }) => {
                        tracing::warn!(error = %e, "refused: phone bound to another user");
                        metrics::global().provisioning(ProvisioningResult::Refused);
                        Err(ProvisionError::AlreadyBound)
                    }
                    Err(e @ StoreError::DeviceLimit { .. }) => {
                        tracing::warn!(error = %e, "refused: the user is at the profile's device limit");
                        metrics::global().provisioning(ProvisioningResult::Refused);
                        Err(ProvisionError::DeviceLimit)
                    }
                    Err(
                        e @ (StoreError::ProvisionNotAllowed { .. }
                        | StoreError::NoProfile { .. }
                        | StoreError::UserDisabled { .. }
                        | StoreError::UnknownUser { .. }),
                    ) => {
                        tracing::warn!(error = %e, "refused by the user's profile or settings; nothing was changed");
                        metrics::global().provisioning(ProvisioningResult::Refused);
                        Err(ProvisionError::Refused(e.to_string()))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "binding failed; nothing was changed");
                        metrics::global().provisioning(ProvisioningResult::Error);
                        Err(ProvisionError::Internal(e.to_string()))
                    }
                };
                let _ = tx.send(Event::ProvisionResult(result));
            }
            .instrument(span),
        );
    }
}

impl Call {
    /// The language of the phone's device template, when the phone is known and has one (a
    /// phone being re-provisioned): it skips the language menu. Guests have no template yet.
    async fn preset_language(&self) -> Option<String> {
        let store = &self.services.store;
        let mac = self.identity.mac.as_deref()?;
        let device = store.find_device_by_mac(mac).await.ok().flatten()?;
        let template = store
            .get_device_template(device.template_id?)
            .await
            .ok()
            .flatten()?;
        Some(template.spec.locale)
    }
}

/// What the media engine needs of the agreed SDP.
fn media_params(n: &Negotiated) -> MediaParams {
    MediaParams {
        codec: n.codec,
        ptime: n.ptime,
        te_pt: n.te_pt(),
        sends: n.direction.sends(),
        receives: n.direction.receives(),
        remote: n.remote_rtp,
    }
}

/// A call authenticated with a registered account: the device is the one the account belongs
/// to (a guest account is unique to its phone), which holds behind NAT and whatever the phone
/// says about itself. What the store knows replaces what the INVITE claimed.
async fn account_identity(services: &Services, account: i64, identity: &mut DeviceIdentity) {
    match services.store.devices_for_account(account).await {
        Ok(devices) => match devices.as_slice() {
            [d] => {
                identity.mac = d.mac.clone().or(identity.mac.take());
                identity.device_name = d.device_name.clone().or(identity.device_name.take());
                identity.vendor = d.vendor.clone().or(identity.vendor.take());
                identity.model = d.model.clone().or(identity.model.take());
            }
            [] => tracing::debug!(account, "the account belongs to no device"),
            _ => tracing::debug!(
                account,
                n = devices.len(),
                "the account's line is on several devices; identifying the phone from the INVITE"
            ),
        },
        Err(e) => tracing::warn!(account, error = %e, "device lookup by account failed"),
    }
}

/// Writes an audit event; a failure is logged, never fatal to the call.
async fn record_audit(
    store: &crate::store::Store,
    identity: &DeviceIdentity,
    user_id: Option<&str>,
    auth: Option<AuthMethod>,
    outcome: AuditOutcome,
    detail: &str,
) {
    if let Err(e) = store
        .record_audit(identity, user_id, auth, outcome, detail)
        .await
    {
        tracing::error!(error = %e, "could not write the audit event");
    }
}
