//! `flotilla login [HOST:PORT] [--name NAME] --ca-file FILE --token TOKEN`: checks that the hub
//! answers and takes the token, then saves the address, the CA certificate and the token as a
//! context in the config file (mode 0600, `contexts`) and makes it current, so later commands
//! need no flags.

use anyhow::{Context as _, bail};
use clap::Args;
use flotilla_proto::v1::AdminFleetStatusRequest;

use crate::contexts::{Contexts, HubContext};
use crate::global::Global;
use crate::hub::HubArgs;
use crate::output::emit;

/// Arguments of `flotilla login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The hub's API address (HOST:PORT); `--hub` does as well.
    address: Option<String>,
    /// The context's name (default: the hub's host).
    #[arg(long)]
    name: Option<String>,
    /// Read the token from the first line of standard input instead of `--token`, so it
    /// stays out of the shell's history.
    #[arg(long)]
    token_stdin: bool,
    /// Save without checking that the hub answers and takes the token.
    #[arg(long)]
    no_verify: bool,
}

/// Runs `flotilla login`.
pub(crate) async fn run(args: &LoginArgs, global: &Global) -> anyhow::Result<()> {
    let (hub, token, ca_file, insecure) = global.given();
    let Some(address) = args.address.clone().or(hub) else {
        bail!("name the hub: `flotilla login HOST:PORT --ca-file FILE --token TOKEN`");
    };
    let token = if args.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the token from standard input")?;
        Some(line.trim().to_owned()).filter(|t| !t.is_empty())
    } else {
        token
    };
    let ca = match (&ca_file, insecure) {
        (_, true) => None,
        (Some(path), false) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!(
                    "{} holds no PEM certificate; pass the hub's CA certificate, \
                     `<data-dir>/ca.crt` on a hub node",
                    path.display()
                );
            }
            Some(pem)
        }
        (None, false) => bail!(
            "the hub speaks TLS: pass --ca-file with its CA certificate (`<data-dir>/ca.crt` on a \
             hub node); for a hub started with --insecure, pass --insecure"
        ),
    };
    let context = HubContext {
        hub: address.clone(),
        ca: ca.clone(),
        token: token.clone(),
        insecure,
    };
    if !args.no_verify {
        let hub = HubArgs {
            hub: address.clone(),
            token,
            ca_file: None,
            ca_pem: ca,
            insecure,
        };
        let mut admin = hub.connect().await?;
        admin
            .fleet_status(AdminFleetStatusRequest {
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|s| hub.call_error("logging in", s))?;
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => host(&address),
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("--name `{name}`: a context's name is one word");
    }
    let path = crate::contexts::path().context("no config file: set FLOTILLA_CONFIG or HOME")?;
    let mut contexts = Contexts::load_from(&path)?;
    contexts.contexts.insert(name.clone(), context);
    contexts.current_context = Some(name.clone());
    contexts.save_to(&path)?;
    emit(&format!(
        "logged in to {address}{}; context `{name}` saved in {} and made current\n",
        if args.no_verify { " (not checked)" } else { "" },
        path.display()
    ))
}

/// The host of `HOST:PORT` (brackets of an IPv6 address dropped).
fn host(address: &str) -> String {
    let address = address
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::host;

    #[test]
    fn a_context_is_named_after_the_host() {
        assert_eq!(host("hub.example:7071"), "hub.example");
        assert_eq!(host("https://10.0.0.1:7071"), "10.0.0.1");
        assert_eq!(host("[::1]:7071"), "::1");
        assert_eq!(host("hub"), "hub");
    }
}
