//! The `sessiond` binary: `serve`, configuration checks, and an operator CLI that drives the
//! admin API of a running server.

mod cli;
mod config;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sessiond",
    version,
    about = "A self-hosted session management server"
)]
struct Args {
    /// TOML configuration file (every key can also be set as SESSIOND_<SECTION>_<KEY>).
    #[arg(long, global = true, env = "SESSIOND_CONFIG")]
    config: Option<PathBuf>,
    /// Base URL of the running sessiond the admin commands talk to (default: http://<listen>,
    /// https://<listen> with tls.cert).
    #[arg(long, global = true, env = "SESSIOND_URL")]
    url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (overrides `listen` / SESSIOND_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The data directory (overrides `data_dir` / SESSIOND_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate the configuration and print the effective one (secrets masked).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create or upgrade the store schema, then exit.
    Migrate,
    /// Write a consistent copy of the SQLite database to FILE (while the server runs).
    Backup {
        /// Where the copy goes; it must not exist yet.
        file: PathBuf,
    },
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    Check,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let mut cfg = config::Config::load(args.config.as_deref())?;
    if let Command::Serve { listen, data_dir } = &args.command {
        if let Some(l) = listen {
            cfg.listen = *l;
        }
        if let Some(d) = data_dir {
            cfg.data_dir.clone_from(d);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Serve { .. } => rt.block_on(serve::run(cfg)),
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            cli::print(&format!(
                "# configuration is valid; effective values:\n{}",
                cfg.masked_toml()?
            ));
            Ok(())
        }
        Command::Migrate => rt.block_on(serve::migrate(&cfg)),
        Command::Backup { file } => serve::backup(&cfg, &file),
        Command::Admin(cmd) => rt.block_on(cli::run(&cfg, args.url.as_deref(), cmd)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key, session and secret ids are random base64url and may begin with `-`: the
    /// commands that take one accept it as the id, not as an option.
    #[test]
    fn ids_beginning_with_a_hyphen_are_ids() {
        for args in [
            &["sessiond", "keys", "revoke", "-fAbc"][..],
            &["sessiond", "sessions", "revoke", "--tenant", "t1", "-fAbc"],
            &[
                "sessiond",
                "partner-secret",
                "revoke",
                "--tenant",
                "t1",
                "-fAbc",
            ],
        ] {
            let parsed = Args::try_parse_from(args);
            let id = match parsed.map(|a| a.command) {
                Ok(Command::Admin(cli::AdminCommand::Keys {
                    command: cli::KeysCommand::Revoke { kid },
                })) => kid,
                Ok(Command::Admin(cli::AdminCommand::Sessions {
                    command: cli::SessionsCommand::Revoke { session_id, .. },
                })) => session_id,
                Ok(Command::Admin(cli::AdminCommand::PartnerSecret {
                    command: cli::PartnerSecretCommand::Revoke { secret_id, .. },
                })) => secret_id,
                Ok(_) => panic!("{args:?}: another command"),
                Err(e) => panic!("{args:?}: {e}"),
            };
            assert_eq!(id, "-fAbc", "{args:?}");
        }
    }
}
