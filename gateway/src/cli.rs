//! The command line: `poolgate <registrar|ppe|ppu|check|status> [options]`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Role;
use crate::telemetry::LogFormat;

const AFTER_HELP: &str = "\
Configuration: one TOML file per role. Every key is documented, with its default,
in the shipped files (config/registrar.toml, config/ppe.toml, config/ppu.toml,
installed to /etc/poolgate/). Later sources win: built-in defaults, then --config
files in order, then environment variables POOLGATE_<ROLE>__<KEY> (nested keys
joined by __, e.g. POOLGATE_PPU__SESSION__KEEPALIVE_INTERVAL=500ms), then --set.

Signals: SIGHUP reloads the configuration, SIGTERM/SIGINT drain and exit.
Exit codes: 0 success, 1 failure, 2 usage error, 3 (status) not running,
78 configuration invalid.";

/// poolgate: Reliable Server Pooling (RSerPool) gateway for unmodified TCP, TLS and HTTP services.
///
/// Clients connect to a PPU gateway; the PPU carries each session to a pool element
/// (a PPE in front of a legacy backend) chosen through a registrar, and moves the
/// session to another pool element when its backend fails.
#[derive(Debug, Parser)]
#[command(name = "poolgate", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Log line format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "POOLGATE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log level or filter: error, warn, info, debug, trace, or per module (poolgate=debug,warn).
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "POOLGATE_LOG",
        value_name = "LEVEL"
    )]
    pub log_level: String,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a registrar: keeps the pools' membership (the handlespace), watches its pool
    /// elements with keep-alives and shares the handlespace with peer registrars (ENRP).
    #[command(long_about = "Run a registrar (ENRP server).\n\n\
        Pool elements register here; the registrar keeps the handlespace (which pool \
        elements serve which pool), checks its pool elements with endpoint keep-alives \
        (registrar.keepalive), answers handle resolutions from pool users, drops pool \
        elements that pool users report unreachable (registrar.max_bad_pe_report), and \
        mirrors the handlespace with peer registrars (registrar.peer). Listens on \
        registrar.listen (UDP, SCTP over UDP). Default configuration: \
        /etc/poolgate/registrar.toml.")]
    Registrar(RoleArgs),

    /// Run a proxy pool element (PPE) in front of one unmodified backend server.
    #[command(
        long_about = "Run a proxy pool element (PPE) in front of one backend.\n\n\
        The PPE registers the backend into a pool (ppe.pool) at a registrar \
        (ppe.registrars), reports its load, health-checks the backend \
        (ppe.backend) and turns each ASAP session from a pool user into a TCP \
        connection to the backend, sealing the session's state into cookies \
        (ppe.key, ppe.cookie_interval) so that another pool element can resume it. \
        Run one per backend: poolgate-ppe@NAME.service reads /etc/poolgate/ppe-NAME.toml."
    )]
    Ppe(RoleArgs),

    /// Run a proxy pool user (PPU) gateway that accepts unmodified clients.
    #[command(
        long_about = "Run a proxy pool user (PPU) gateway for unmodified clients.\n\n\
        Each listener (ppu.listener) accepts TCP, TLS, HTTP or HTTPS clients, resolves \
        its pool at a registrar (ppu.registrars), picks a pool element and carries the \
        client's session there. Session keep-alives (ppu.session) detect a failed pool \
        element; the session then moves to another one, resuming from its last state \
        cookie. Default configuration: /etc/poolgate/ppu.toml."
    )]
    Ppu(RoleArgs),

    /// Check configuration files and print every problem found, with file, line and key.
    #[command(
        long_about = "Check configuration files without starting anything.\n\n\
        Reads the files as the role would (defaults, files, POOLGATE_* environment, \
        --set), then prints every problem at once, each with file, line, column, key \
        and reason: syntax errors, unknown keys, wrong types, bad addresses or \
        durations, missing or too short secret and key files, keep-alive timeouts \
        longer than their interval, duplicate listeners, and more. Warnings (such as \
        secret files readable by others) do not fail the check. Exits 0 when the \
        configuration is usable, 1 otherwise."
    )]
    Check(CheckArgs),

    /// Ask a running poolgate whether it is up, through its metrics endpoint.
    #[command(long_about = "Ask a running poolgate whether it is up.\n\n\
        Reads the configuration to find the metrics endpoint (ROLE.metrics.listen) \
        unless --address is given, fetches /metrics and prints the poolgate_* \
        samples. Exits 0 when it answers, 3 when it does not.")]
    Status(StatusArgs),

    /// The failure-handling lab: the CalcApp workload against poolgate's own state
    /// machines in simulated time, or as real processes over SCTP on a scaled clock
    /// (`poolgate lab run|sweep [--real]|agree|cookie-interval`).
    Lab(crate::lab::cli::LabArgs),
}

/// Options of the role subcommands.
#[derive(Debug, Args, Clone, Default)]
pub struct RoleArgs {
    /// Configuration file (TOML); repeat to layer several, later files win.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Override one key, e.g. --set session.keepalive_interval=500ms (role prefix optional); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// A role name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleName {
    /// The registrar.
    Registrar,
    /// The proxy pool element.
    Ppe,
    /// The proxy pool user.
    Ppu,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Registrar => Role::Registrar,
            RoleName::Ppe => Role::Ppe,
            RoleName::Ppu => Role::Ppu,
        }
    }
}

/// Options of `poolgate check`.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Configuration file(s) to check; repeat to layer several, later files win.
    #[arg(short = 'c', long = "config", value_name = "FILE", required = true)]
    pub config: Vec<PathBuf>,

    /// Which role the files configure; by default taken from their top-level table.
    #[arg(long, value_enum)]
    pub role: Option<RoleName>,

    /// Override one key as the role would (see the role subcommands); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Options of `poolgate status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Configuration file(s) of the instance to ask (for its metrics address).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Which role the instance plays; by default taken from the file's top-level table.
    #[arg(long, value_enum)]
    pub role: Option<RoleName>,

    /// Ask this metrics address (host:port) instead of the configured one.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,

    /// Give up after this long (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub timeout: std::time::Duration,

    /// Print the status document as JSON (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::config::values::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_roles_and_globals() {
        let cli = Cli::try_parse_from([
            "poolgate",
            "ppu",
            "-c",
            "a.toml",
            "--config",
            "b.toml",
            "--set",
            "x=1",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        match cli.command {
            Command::Ppu(a) => {
                assert_eq!(a.config.len(), 2);
                assert_eq!(a.set, vec!["x=1".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["poolgate", "check"]).is_err(),
            "check needs --config"
        );
        let st = Cli::try_parse_from([
            "poolgate",
            "status",
            "--address",
            "127.0.0.1:1",
            "--timeout",
            "250ms",
        ])
        .unwrap();
        match st.command {
            Command::Status(s) => assert_eq!(s.timeout, std::time::Duration::from_millis(250)),
            other => panic!("{other:?}"),
        }
    }
}
