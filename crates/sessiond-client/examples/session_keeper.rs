//! Logs in and keeps the session alive: asks whoami every `--every` seconds (which refreshes
//! the token when due), logs in again when the server ends the session, logs out on Ctrl-C.
//!
//! ```text
//! SESSIOND_PASSWORD='correct horse battery' cargo run -p sessiond-client \
//!     --example session_keeper -- --url http://127.0.0.1:8080 --tenant 1234567 --username alice
//! ```

use clap::Parser;
use sessiond_client::{Client, DeviceRequest, Error, LoginRequest};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Log in to sessiond and keep the session alive")]
struct Args {
    /// sessiond's base URL.
    #[arg(long, env = "SESSIOND_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The tenant (`X-Tenant-ID`).
    #[arg(long, env = "SESSIOND_TENANT")]
    tenant: String,
    #[arg(long, env = "SESSIOND_USERNAME")]
    username: String,
    /// Read from the environment rather than the command line, where `ps` would show it.
    #[arg(long, env = "SESSIOND_PASSWORD", hide_env_values = true)]
    password: String,
    /// Seconds between two whoami calls.
    #[arg(long, default_value_t = 60)]
    every: u64,
    /// Stop after this many relogins in a row fail.
    #[arg(long, default_value_t = 3)]
    max_relogins: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let client = Client::new(&args.url, &args.tenant)?;
    login(&client, &args).await?;

    let mut tick = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    let mut failed_relogins = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        match client.whoami().await {
            Ok(me) => {
                failed_relogins = 0;
                println!(
                    "session {} alive; token valid until {}",
                    me.session.session_id, me.token_expires_at
                );
            }
            Err(Error::ReloginRequired { code }) => {
                println!("the session ended ({code:?}); logging in again");
                if let Err(e) = login(&client, &args).await {
                    failed_relogins += 1;
                    eprintln!("login failed: {e}");
                    if failed_relogins >= args.max_relogins {
                        return Err(e.into());
                    }
                }
            }
            Err(Error::RateLimited { retry_after }) => {
                eprintln!("rate limited; waiting {retry_after:?}");
                if let Some(wait) = retry_after {
                    tokio::time::sleep(wait).await;
                }
            }
            // Network trouble or a 5xx: the session is kept; the next tick tries again.
            Err(e) => eprintln!("whoami failed: {e}"),
        }
    }
    client.logout().await?;
    println!("logged out");
    Ok(())
}

async fn login(client: &Client, args: &Args) -> Result<(), Error> {
    let session = client
        .login_with(LoginRequest {
            username: args.username.clone(),
            password: args.password.clone(),
            device: Some(DeviceRequest {
                label: Some("session_keeper".into()),
            }),
            mode: Default::default(),
        })
        .await?;
    println!(
        "logged in: session {} (token until {}, refresh from {})",
        session.session_id, session.expires_at, session.refresh_at
    );
    Ok(())
}
