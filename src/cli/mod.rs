//! The `selfprov` command line: `serve` runs the IVR; the admin commands reach the same store as
//! the server (also while it runs), through the same `--config`.
//!
//! Every admin REST API operation has a command (`line create`, `user add-line`, `settings
//! update`, ..., and `api METHOD PATH` for any route): they run the API's own handlers in
//! process, so validation, errors and JSON output are the API's.

pub mod admin;
pub mod langpack;

use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "selfprov",
    version,
    about = "Self-provisioning IVR: binds a new desk phone to its user over a SIP call"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// TOML configuration file (see docs/configuration.md); without it, the built-in defaults.
    #[arg(long, short = 'c', global = true, env = "SELFPROV_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the IVR: SIP on sip.listen (UDP and TCP), RTP from rtp.port_min..port_max.
    Serve(ConfigArg),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Show devices and their bindings.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Check a configuration file and print the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Hash a PIN or admin code for the config file.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage admin REST API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage lines (directory numbers) and their associations.
    #[command(subcommand)]
    Line(LineCommand),
    /// Manage SIP endpoints (the credentials of lines).
    #[command(subcommand)]
    Endpoint(CrudCommand),
    /// Manage universal device templates.
    #[command(subcommand, name = "device-template")]
    DeviceTemplate(CrudCommand),
    /// Manage universal line templates.
    #[command(subcommand, name = "line-template")]
    LineTemplate(CrudCommand),
    /// Manage user profiles.
    #[command(subcommand)]
    Profile(CrudCommand),
    /// Show or change the self-provisioning settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Show the audit trail (newest first, JSON).
    Audit(AuditArgs),
    /// Run any admin REST API request in process (no HTTP, no token): e.g.
    /// `selfprov api GET /api/v1/devices?search=0011`.
    Api(ApiArgs),
    /// Language-pack tools: check, build (TTS), list, info.
    #[command(subcommand)]
    Langpack(langpack::LangpackCommand),
    /// The call-control connectors (`[[pbx]]`): delivery status, sync, retry.
    #[command(subcommand)]
    Pbx(PbxCommand),
}

#[derive(Subcommand, Debug)]
pub enum PbxCommand {
    /// Each connector: changes pending and parked, deliveries, the last error.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Compare what the PBX holds with the store and mend the difference (JSON).
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        /// The connector's name (the `name` of its `[[pbx]]` table).
        name: String,
        /// Only print the differences.
        #[arg(long)]
        dry_run: bool,
    },
    /// Put the connector's parked changes back in line (after fixing what the PBX refused).
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token and print it (shown this once; only its hash is stored).
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// A note for admins: who or what uses the token.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// List API tokens (names and times, never the tokens).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke an API token by ID.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
}

/// Paging, sorting and search of a list (the API's query parameters).
#[derive(Args, Debug, Clone, Default)]
pub struct ListArgs {
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub offset: Option<u32>,
    /// Field to sort by.
    #[arg(long)]
    pub order: Option<String>,
    /// asc or desc.
    #[arg(long)]
    pub direction: Option<String>,
    /// Case-insensitive substring.
    #[arg(long)]
    pub search: Option<String>,
}

/// A JSON body: the text itself, `@FILE`, or `-` for standard input.
#[derive(Args, Debug, Clone)]
pub struct DataArg {
    /// JSON body (see docs/api.md): the text, @FILE, or - for standard input.
    #[arg(long)]
    pub data: String,
}

/// The five operations of a resource.
#[derive(Subcommand, Debug)]
pub enum CrudCommand {
    /// List (JSON page: {"total", "items"}).
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one by ID.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
    /// Create from a JSON body.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        data: DataArg,
    },
    /// Change the fields named in a JSON body.
    Update {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
        #[command(flatten)]
        data: DataArg,
    },
    /// Delete by ID.
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum LineCommand {
    #[command(flatten)]
    Crud(CrudCommand),
    /// Give the line its SIP endpoint.
    SetEndpoint {
        #[command(flatten)]
        config: ConfigArg,
        line_id: i64,
        sip_id: i64,
    },
    /// Take the line's SIP endpoint away.
    UnsetEndpoint {
        #[command(flatten)]
        config: ConfigArg,
        line_id: i64,
        sip_id: i64,
    },
    /// Put the line on a device.
    AddDevice {
        #[command(flatten)]
        config: ConfigArg,
        line_id: i64,
        device_id: i64,
        /// Line-key position (default: the lowest free one).
        #[arg(long)]
        position: Option<u32>,
    },
    /// Take the line off a device.
    RemoveDevice {
        #[command(flatten)]
        config: ConfigArg,
        line_id: i64,
        device_id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Show the settings (JSON).
    Show(ConfigArg),
    /// Change the settings named in a JSON body (`{"admin_code": "1234"}` sets the admin code).
    Update {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Device key (MAC, device name or SIP identity).
    #[arg(long)]
    pub device: Option<String>,
    /// User ID.
    #[arg(long)]
    pub user: Option<String>,
    /// Outcome (bound, bad-pin, ...).
    #[arg(long)]
    pub outcome: Option<String>,
    /// From this time (RFC 3339 UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Until this time (RFC 3339 UTC).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
    #[arg(long)]
    pub offset: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// GET, POST, PUT or DELETE.
    pub method: String,
    /// The path, with /api/v1 and any query string.
    pub path: String,
    /// JSON body: the text, @FILE, or - for standard input.
    #[arg(long)]
    pub data: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user who may self-provision a phone.
    Add(UserAddArgs),
    /// List users.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user (and unbind their phones).
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// The user ID.
        user_id: String,
    },
    /// Show a user (JSON).
    Show {
        #[command(flatten)]
        config: ConfigArg,
        user_id: String,
    },
    /// Change the fields of a user named in a JSON body (`pin`, `password`, `profile_id`...).
    Update {
        #[command(flatten)]
        config: ConfigArg,
        user_id: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Import users from a CSV file with a header row (see docs/api.md, POST /users/import).
    Import {
        #[command(flatten)]
        config: ConfigArg,
        /// The CSV file, or - for standard input.
        file: PathBuf,
    },
    /// Give a line to a user.
    AddLine {
        #[command(flatten)]
        config: ConfigArg,
        user_id: String,
        line_id: i64,
    },
    /// Take a line from a user.
    RemoveLine {
        #[command(flatten)]
        config: ConfigArg,
        user_id: String,
        line_id: i64,
    },
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub user_id: String,
    /// Numeric ID a caller may type instead of the user ID (unique).
    #[arg(long)]
    pub self_provisioning_id: Option<String>,
    /// The user's primary extension: line 1 of a phone bound to them.
    #[arg(long)]
    pub extension: String,
    /// Digits the caller types in secure mode (stored as an argon2 hash).
    #[arg(long)]
    pub pin: Option<String>,
    #[arg(long, default_value = "")]
    pub first_name: String,
    #[arg(long, default_value = "")]
    pub last_name: String,
    /// Refuse self-provisioning for this user.
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// List devices with their owner and lines.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Find devices (JSON page), e.g. by MAC: `device find --search 00:11:22:aa:bb:cc`.
    Find {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a device (JSON).
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
    /// Register a device from a JSON body.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        data: DataArg,
    },
    /// Change the fields of a device named in a JSON body.
    Update {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
        #[command(flatten)]
        data: DataArg,
    },
    /// Delete a device.
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate the configuration; print it with defaults filled in.
    Check(ConfigArg),
}

#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Read digits from standard input and print their argon2 hash.
    Hash,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("selfprov: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(arg: &ConfigArg) -> anyhow::Result<Config> {
    Ok(Config::load(arg.config.as_deref())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(c) => {
            let config = load_config(&c)?;
            crate::server::init_logging(&config.log);
            runtime()?.block_on(crate::server::run(config))
        }
        Command::Config(ConfigCommand::Check(c)) => {
            let config = load_config(&c)?;
            // What serve checks before it binds a socket, so that `config check` fails
            // wherever `serve` would (no setting written, no store created, no socket bound).
            for line in runtime()?.block_on(crate::server::preflight(&config))? {
                println!("{line}");
            }
            println!("configuration OK");
            println!("{config:#?}");
            Ok(())
        }
        Command::Secret(SecretCommand::Hash) => admin::secret_hash(),
        Command::Token(cmd) => {
            let config = match &cmd {
                TokenCommand::Create { config, .. }
                | TokenCommand::List { config }
                | TokenCommand::Revoke { config, .. } => load_config(config)?,
            };
            runtime()?.block_on(admin::token(&config, &cmd))
        }
        Command::User(cmd) => user_command(cmd),
        Command::Device(cmd) => device_command(cmd),
        Command::Line(LineCommand::Crud(c)) => run_api(crud_request("/api/v1/lines", c)?),
        Command::Line(cmd) => run_api(line_request(cmd)?),
        Command::Endpoint(c) => run_api(crud_request("/api/v1/endpoints/sip", c)?),
        Command::DeviceTemplate(c) => run_api(crud_request("/api/v1/templates/device", c)?),
        Command::LineTemplate(c) => run_api(crud_request("/api/v1/templates/line", c)?),
        Command::Profile(c) => run_api(crud_request("/api/v1/user-profiles", c)?),
        Command::Settings(SettingsCommand::Show(config)) => run_api(admin::ApiRequest::new(
            &config,
            "GET",
            "/api/v1/selfprov/settings".into(),
            None,
        )),
        Command::Settings(SettingsCommand::Update { config, data }) => {
            run_api(admin::ApiRequest::new(
                &config,
                "PUT",
                "/api/v1/selfprov/settings".into(),
                Some(admin::Body::json(&data.data)?),
            ))
        }
        Command::Audit(a) => {
            let query = admin::query_string(&[
                ("device", a.device.clone()),
                ("user", a.user.clone()),
                ("outcome", a.outcome.clone()),
                ("from", a.from.clone()),
                ("until", a.until.clone()),
                ("limit", a.limit.map(|v| v.to_string())),
                ("offset", a.offset.map(|v| v.to_string())),
            ]);
            run_api(admin::ApiRequest::new(
                &a.config,
                "GET",
                format!("/api/v1/audit{query}"),
                None,
            ))
        }
        Command::Langpack(cmd) => langpack::run(cmd),
        Command::Pbx(PbxCommand::Status { config, json }) => {
            let config = load_config(&config)?;
            runtime()?.block_on(admin::pbx_status(&config, json))
        }
        Command::Pbx(PbxCommand::Sync {
            config,
            name,
            dry_run,
        }) => run_api(admin::ApiRequest::new(
            &config,
            "POST",
            format!(
                "/api/v1/pbx/{}/sync{}",
                admin::path_segment(&name),
                if dry_run { "?dry_run=true" } else { "" }
            ),
            None,
        )),
        Command::Pbx(PbxCommand::Retry { config, name }) => run_api(admin::ApiRequest::new(
            &config,
            "POST",
            format!("/api/v1/pbx/{}/retry", admin::path_segment(&name)),
            None,
        )),
        Command::Api(a) => {
            let body = a.data.as_deref().map(admin::Body::json).transpose()?;
            run_api(admin::ApiRequest::new(
                &a.config,
                &a.method.to_ascii_uppercase(),
                a.path.clone(),
                body,
            ))
        }
    }
}

/// Runs one API request in process and prints its answer.
fn run_api(req: admin::ApiRequest) -> anyhow::Result<()> {
    let config = load_config(&req.config)?;
    runtime()?.block_on(admin::api_request(&config, req))
}

fn list_query(l: &ListArgs) -> String {
    admin::query_string(&[
        ("limit", l.limit.map(|v| v.to_string())),
        ("offset", l.offset.map(|v| v.to_string())),
        ("order", l.order.clone()),
        ("direction", l.direction.clone()),
        ("search", l.search.clone()),
    ])
}

fn crud_request(base: &str, c: CrudCommand) -> anyhow::Result<admin::ApiRequest> {
    Ok(match c {
        CrudCommand::List { config, list } => {
            admin::ApiRequest::new(&config, "GET", format!("{base}{}", list_query(&list)), None)
        }
        CrudCommand::Show { config, id } => {
            admin::ApiRequest::new(&config, "GET", format!("{base}/{id}"), None)
        }
        CrudCommand::Create { config, data } => admin::ApiRequest::new(
            &config,
            "POST",
            base.to_string(),
            Some(admin::Body::json(&data.data)?),
        ),
        CrudCommand::Update { config, id, data } => admin::ApiRequest::new(
            &config,
            "PUT",
            format!("{base}/{id}"),
            Some(admin::Body::json(&data.data)?),
        ),
        CrudCommand::Delete { config, id } => {
            admin::ApiRequest::new(&config, "DELETE", format!("{base}/{id}"), None)
        }
    })
}

fn line_request(c: LineCommand) -> anyhow::Result<admin::ApiRequest> {
    Ok(match c {
        LineCommand::Crud(c) => return crud_request("/api/v1/lines", c),
        LineCommand::SetEndpoint {
            config,
            line_id,
            sip_id,
        } => admin::ApiRequest::new(
            &config,
            "PUT",
            format!("/api/v1/lines/{line_id}/endpoints/sip/{sip_id}"),
            None,
        ),
        LineCommand::UnsetEndpoint {
            config,
            line_id,
            sip_id,
        } => admin::ApiRequest::new(
            &config,
            "DELETE",
            format!("/api/v1/lines/{line_id}/endpoints/sip/{sip_id}"),
            None,
        ),
        LineCommand::AddDevice {
            config,
            line_id,
            device_id,
            position,
        } => admin::ApiRequest::new(
            &config,
            "PUT",
            format!(
                "/api/v1/lines/{line_id}/devices/{device_id}{}",
                admin::query_string(&[("position", position.map(|p| p.to_string()))])
            ),
            None,
        ),
        LineCommand::RemoveDevice {
            config,
            line_id,
            device_id,
        } => admin::ApiRequest::new(
            &config,
            "DELETE",
            format!("/api/v1/lines/{line_id}/devices/{device_id}"),
            None,
        ),
    })
}

/// The user commands: `add`, `list`, `remove` keep their own implementation and output; the
/// others are API requests.
fn user_command(c: UserCommand) -> anyhow::Result<()> {
    let user_path = |u: &str| format!("/api/v1/users/{}", admin::path_segment(u));
    run_api(match c {
        UserCommand::Add(args) => {
            let config = load_config(&args.config)?;
            return runtime()?.block_on(admin::user_add(&config, &args));
        }
        UserCommand::List { config, json } => {
            let config = load_config(&config)?;
            return runtime()?.block_on(admin::user_list(&config, json));
        }
        UserCommand::Remove { config, user_id } => {
            let config = load_config(&config)?;
            return runtime()?.block_on(admin::user_remove(&config, &user_id));
        }
        UserCommand::Show { config, user_id } => {
            admin::ApiRequest::new(&config, "GET", user_path(&user_id), None)
        }
        UserCommand::Update {
            config,
            user_id,
            data,
        } => admin::ApiRequest::new(
            &config,
            "PUT",
            user_path(&user_id),
            Some(admin::Body::json(&data.data)?),
        ),
        UserCommand::Import { config, file } => admin::ApiRequest::new(
            &config,
            "POST",
            "/api/v1/users/import".into(),
            Some(admin::Body::csv_file(&file)?),
        ),
        UserCommand::AddLine {
            config,
            user_id,
            line_id,
        } => admin::ApiRequest::new(
            &config,
            "PUT",
            format!("{}/lines/{line_id}", user_path(&user_id)),
            None,
        ),
        UserCommand::RemoveLine {
            config,
            user_id,
            line_id,
        } => admin::ApiRequest::new(
            &config,
            "DELETE",
            format!("{}/lines/{line_id}", user_path(&user_id)),
            None,
        ),
    })
}

/// The device commands: `list` keeps its table and JSON array; the others are API requests.
fn device_command(c: DeviceCommand) -> anyhow::Result<()> {
    run_api(match c {
        DeviceCommand::List { config, json } => {
            let config = load_config(&config)?;
            return runtime()?.block_on(admin::device_list(&config, json));
        }
        DeviceCommand::Find { config, list } => {
            crud_request("/api/v1/devices", CrudCommand::List { config, list })?
        }
        DeviceCommand::Show { config, id } => {
            crud_request("/api/v1/devices", CrudCommand::Show { config, id })?
        }
        DeviceCommand::Create { config, data } => {
            crud_request("/api/v1/devices", CrudCommand::Create { config, data })?
        }
        DeviceCommand::Update { config, id, data } => {
            crud_request("/api/v1/devices", CrudCommand::Update { config, id, data })?
        }
        DeviceCommand::Delete { config, id } => {
            crud_request("/api/v1/devices", CrudCommand::Delete { config, id })?
        }
    })
}
