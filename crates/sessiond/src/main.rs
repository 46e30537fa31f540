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
