//! The `selfprov` command line: `serve` runs the IVR; the admin commands reach the same store as
//! the server (also while it runs), through the same `--config`.

pub mod admin;

use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "selfprov", version, about = "Self-provisioning IVR: binds a new desk phone to its user over a SIP call")]
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
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(c) => {
            let config = load_config(&c)?;
            crate::server::init_logging(&config.log);
            runtime()?.block_on(crate::server::run(config))
        }
        Command::User(UserCommand::Add(args)) => {
            let config = load_config(&args.config)?;
            runtime()?.block_on(admin::user_add(&config, &args))
        }
        Command::User(UserCommand::List { config, json }) => {
            let config = load_config(&config)?;
            runtime()?.block_on(admin::user_list(&config, json))
        }
        Command::User(UserCommand::Remove { config, user_id }) => {
            let config = load_config(&config)?;
            runtime()?.block_on(admin::user_remove(&config, &user_id))
        }
        Command::Device(DeviceCommand::List { config, json }) => {
            let config = load_config(&config)?;
            runtime()?.block_on(admin::device_list(&config, json))
        }
        Command::Config(ConfigCommand::Check(c)) => {
            let config = load_config(&c)?;
            println!("configuration OK");
            println!("{config:#?}");
            Ok(())
        }
        Command::Secret(SecretCommand::Hash) => admin::secret_hash(),
    }
}
