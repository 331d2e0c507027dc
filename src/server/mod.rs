//! The tokio layer: binds the SIP UDP/TCP listeners and RTP sockets, drives the sans-IO cores with
//! datagrams and time, and runs one task per call (no thread per call).

use crate::config::{Config, LogConfig};

pub fn init_logging(log: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
