//! Admin subcommands: users, devices, secrets. Each opens the store named by the config.

use super::UserAddArgs;
use crate::config::Config;

pub async fn user_add(_config: &Config, _args: &UserAddArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub async fn user_list(_config: &Config, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub async fn user_remove(_config: &Config, _user_id: &str) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub async fn device_list(_config: &Config, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn secret_hash() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
