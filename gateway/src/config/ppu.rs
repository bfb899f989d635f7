//! PPU (proxy pool user) configuration (`[ppu]`, shipped as `config/ppu.toml`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use pool_core::types::PoolHandle;
use serde::Deserialize;

use super::common::{self, MetricsConfig, TransportSettings};
use super::plugin::{PluginKind, PluginOptions};
use super::values::Addr;
use super::{Checker, Role, Section};

/// Everything the PPU reads from `[ppu]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpuConfig {
    /// Registrars for handle resolution (UDP addresses of SCTP over UDP), tried in order.
    pub registrars: Vec<Addr>,
    /// Handle resolution.
    pub resolution: ResolutionConfig,
    /// Session failure detection and failover.
    pub session: SessionConfig,
    /// On drain (SIGTERM): stop accepting, then give running sessions this long.
    #[serde(deserialize_with = "super::values::duration")]
    pub drain_grace: Duration,
    /// Limits and timeouts of `http`/`https` listeners (`[ppu.http]`).
    pub http: HttpSettings,
    /// Client-facing listeners (`[[ppu.listener]]`).
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    /// Metrics endpoint.
    pub metrics: MetricsConfig,
    /// SCTP engine settings of every association (`[ppu.transport]`).
    pub transport: TransportSettings,
    /// Worker threads of the process (0 = one per CPU).
    pub threads: u32,
}

/// Handle resolution settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionConfig {
    /// How long a resolved PE list is reused before asking the registrar again.
    #[serde(deserialize_with = "super::values::duration")]
    pub cache_staleness: Duration,
    /// How long to wait for a registrar's answer before trying the next.
    #[serde(deserialize_with = "super::values::duration")]
    pub timeout: Duration,
}

/// Session keep-alive and failover.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Time between session keep-alives to the PE.
    #[serde(deserialize_with = "super::values::duration")]
    pub keepalive_interval: Duration,
    /// How long to wait for a keep-alive answer before failing over.
    #[serde(deserialize_with = "super::values::duration")]
    pub keepalive_timeout: Duration,
    /// Most PEs tried for one session before the client connection is given up.
    pub failover_max_attempts: u32,
    /// Report unreachable PEs to the registrar (ENDPOINT_UNREACHABLE).
    pub report_failures: bool,
}

/// Limits and timeouts of `http` and `https` listeners, each with its answer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request head (HTTP/1.1) or header list (HTTP/2) → `431`.
    pub max_header_bytes: usize,
    /// Most header fields in a request → `431`.
    pub max_headers: usize,
    /// Largest request body → `413`.
    pub max_body_bytes: u64,
    /// A client that has not sent a complete request head this long after starting
    /// one (HTTP/1.1) is disconnected.
    #[serde(deserialize_with = "super::values::duration")]
    pub header_read_timeout: Duration,
    /// A request whose body is incomplete and has brought no bytes this long is
    /// abandoned → `408` (or the connection closed once a response head went out).
    #[serde(deserialize_with = "super::values::duration")]
    pub body_read_timeout: Duration,
    /// Longest wait for the response head of a request (failovers included) → `504`.
    #[serde(deserialize_with = "super::values::duration")]
    pub response_timeout: Duration,
    /// Concurrent requests (HTTP/2 streams) per client connection.
    pub max_concurrent_streams: u32,
}

/// Smallest `max_header_bytes` (hyper's smallest read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

/// What a listener speaks to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerKind {
    /// Plain TCP byte stream.
    Tcp,
    /// TLS terminated here, plain stream inside.
    Tls,
    /// HTTP/1.1 or HTTP/2 (prior knowledge) over TCP.
    Http,
    /// HTTP/1.1 or HTTP/2 (ALPN) over TLS.
    Https,
}

impl ListenerKind {
    /// Whether TLS is terminated on this listener.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Https)
    }

    /// Whether requests are parsed here (HTTP gateway) rather than relayed as bytes.
    pub fn is_http(self) -> bool {
        matches!(self, ListenerKind::Http | ListenerKind::Https)
    }

    /// The name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        }
    }
}

/// A client-facing listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name (used in logs and metric labels).
    pub name: String,
    /// Protocol towards clients.
    pub kind: ListenerKind,
    /// TCP address to accept clients on.
    pub bind: Addr,
    /// Pool handle whose PEs serve this listener's clients.
    pub pool: String,
    /// Session-state plugin; default "raw" (`http`/`https` listeners need "http").
    #[serde(default = "default_plugin")]
    pub plugin: PluginKind,
    /// Plugin options (must match the PPEs of the pool); defaults when absent.
    #[serde(default)]
    pub plugin_options: PluginOptions,
    /// PEM certificate chain (tls/https only).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (tls/https only).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Expect a PROXY protocol v1/v2 header from a load balancer in front.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Send a PROXY protocol header naming the client to the backend (tcp/tls only).
    #[serde(default)]
    pub send_proxy_protocol: SendProxy,
}

/// Whether the PE starts each backend connection with a PROXY protocol header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendProxy {
    /// No header.
    #[default]
    Off,
    /// Version 1 (text).
    V1,
    /// Version 2 (binary).
    V2,
}

impl SendProxy {
    /// The version to encode, if any.
    pub fn version(self) -> Option<poolgate_plugins::proxy_protocol::ProxyVersion> {
        use poolgate_plugins::proxy_protocol::ProxyVersion;
        match self {
            SendProxy::Off => None,
            SendProxy::V1 => Some(ProxyVersion::V1),
            SendProxy::V2 => Some(ProxyVersion::V2),
        }
    }
}

impl Listener {
    /// The pool handle as the handlespace type.
    pub fn pool_handle(&self) -> Option<PoolHandle> {
        PoolHandle::new(self.pool.as_bytes().to_vec())
    }
}

fn default_plugin() -> PluginKind {
    PluginKind::Raw
}

/// Longest listener name (it becomes a metric label).
pub const MAX_LISTENER_NAME_LEN: usize = 64;

impl Section for PpuConfig {
    const ROLE: Role = Role::Ppu;

    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    fn threads(&self) -> u32 {
        self.threads
    }

    fn validate(&mut self, check: &mut Checker<'_>) {
        common::threads(check, "ppu.threads", self.threads);
        common::address_list(check, "ppu.registrars", &self.registrars, "registrar");
        common::positive(
            check,
            "ppu.resolution.cache_staleness",
            self.resolution.cache_staleness,
        );
        common::positive(check, "ppu.resolution.timeout", self.resolution.timeout);
        let s = &self.session;
        common::keepalive(
            check,
            "ppu.session.keepalive_interval",
            "ppu.session.keepalive_timeout",
            s.keepalive_interval,
            s.keepalive_timeout,
        );
        if s.failover_max_attempts == 0 {
            check.error("ppu.session.failover_max_attempts", "must be at least 1");
        }
        common::positive(check, "ppu.drain_grace", self.drain_grace);
        self.transport.validate(check, "ppu.transport");
        let h = &self.http;
        let head_max = poolgate_plugins::http::HttpLimits::REQUEST;
        if h.max_header_bytes < MIN_HEADER_BYTES || h.max_header_bytes > head_max.max_head_bytes {
            check.error(
                "ppu.http.max_header_bytes",
                format!(
                    "must be {MIN_HEADER_BYTES} to {} bytes",
                    head_max.max_head_bytes
                ),
            );
        }
        if h.max_headers == 0 || h.max_headers > head_max.max_headers {
            check.error(
                "ppu.http.max_headers",
                format!("must be 1 to {}", head_max.max_headers),
            );
        }
        if h.max_body_bytes > head_max.max_body_bytes {
            check.error(
                "ppu.http.max_body_bytes",
                format!("at most {} bytes", head_max.max_body_bytes),
            );
        }
        common::positive(check, "ppu.http.header_read_timeout", h.header_read_timeout);
        common::positive(check, "ppu.http.body_read_timeout", h.body_read_timeout);
        common::positive(check, "ppu.http.response_timeout", h.response_timeout);
        if h.max_concurrent_streams == 0 {
            check.error("ppu.http.max_concurrent_streams", "must be at least 1");
        }
        if self.listeners.is_empty() {
            check.error("ppu.listener", "at least one [[ppu.listener]] is needed");
        }

        let mut resolved: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut binds: HashMap<std::net::SocketAddr, usize> = HashMap::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let path = format!("ppu.listener[{i}]");
            if l.name.is_empty()
                || l.name.len() > MAX_LISTENER_NAME_LEN
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                check.error(
                    &format!("{path}.name"),
                    format!(
                        "listener name must be 1–{MAX_LISTENER_NAME_LEN} letters, digits, - or _"
                    ),
                );
            }
            if let Some(first) = names.insert(&l.name, i) {
                check.error(
                    &format!("{path}.name"),
                    format!(
                        "listener name `{}` is already used by listener[{first}]",
                        l.name
                    ),
                );
            }
            if let Some(first) = binds.insert(l.bind.0, i) {
                check.error(
                    &format!("{path}.bind"),
                    format!("address {} is already bound by listener[{first}]", l.bind),
                );
            }
            if l.bind.0.port() == 0 {
                check.error(
                    &format!("{path}.bind"),
                    "a client-facing listener needs a fixed port",
                );
            }
            common::pool_handle(check, &format!("{path}.pool"), &l.pool);
            l.plugin_options
                .validate(check, &format!("{path}.plugin_options"), l.plugin);
            if l.kind.is_http() && l.plugin != PluginKind::Http {
                check.error(
                    &format!("{path}.plugin"),
                    format!(
                        "a {} listener carries requests with the \"http\" plugin; set plugin = \"http\"",
                        l.kind.name()
                    ),
                );
            }
            if l.kind.is_http() && l.send_proxy_protocol != SendProxy::Off {
                check.error(
                    &format!("{path}.send_proxy_protocol"),
                    "only tcp and tls listeners send PROXY protocol headers (http and https add Forwarded and X-Forwarded-For)",
                );
            }
            if l.proxy_protocol {
                check.error(
                    &format!("{path}.proxy_protocol"),
                    "accepting a PROXY protocol header from a load balancer is not served by this version; remove the key",
                );
            }
            if l.kind.is_tls() {
                if let (Some(c), Some(k)) = (&l.tls_cert, &l.tls_key) {
                    // Relative to the file that named them; kept so a reload reads the same files.
                    resolved.push((
                        i,
                        check.resolve_file(&format!("{path}.tls_cert"), c),
                        check.resolve_file(&format!("{path}.tls_key"), k),
                    ));
                }
                for (key, file) in [("tls_cert", &l.tls_cert), ("tls_key", &l.tls_key)] {
                    let kp = format!("{path}.{key}");
                    match file {
                        None => check.error(
                            &format!("{path}.kind"),
                            format!("a TLS listener needs `{key}`"),
                        ),
                        Some(f) => {
                            if key == "tls_key" {
                                // Private key: read it now so a missing file or loose mode shows up in `check`.
                                let _ = check.read_secret_file(&kp, f);
                            } else {
                                let full = check.resolve_file(&kp, f);
                                if let Err(e) = std::fs::metadata(&full) {
                                    check
                                        .error(&kp, format!("cannot read {}: {e}", full.display()));
                                }
                            }
                        }
                    }
                }
            } else {
                for (key, file) in [("tls_cert", &l.tls_cert), ("tls_key", &l.tls_key)] {
                    if file.is_some() {
                        check.error(
                            &format!("{path}.{key}"),
                            format!("`{key}` is set but the listener kind is not tls or https"),
                        );
                    }
                }
            }
        }
        for (i, cert, key) in resolved {
            self.listeners[i].tls_cert = Some(cert);
            self.listeners[i].tls_key = Some(key);
        }
        self.metrics.validate(check, "ppu.metrics");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::tempdir::TempDir;
    use super::super::{load, Sources};
    use super::PpuConfig;

    /// Loads the shipped defaults overlaid with a file holding `[ppu.http]` + `http`.
    fn with_http(http: &str) -> (TempDir, Result<PpuConfig, Vec<super::super::Diagnostic>>) {
        let dir = TempDir::new();
        let file = dir.path().join("ppu.toml");
        std::fs::write(&file, format!("[ppu]\n\n[ppu.http]\n{http}\n")).unwrap();
        let sources = Sources {
            files: vec![file],
            ..Sources::default()
        };
        let r = load::<PpuConfig>(&sources).map(|l| l.config);
        (dir, r)
    }

    #[test]
    fn body_read_timeout_defaults_to_30s_and_can_be_set() {
        let (_d, c) = with_http("");
        assert_eq!(c.unwrap().http.body_read_timeout, Duration::from_secs(30));
        let (_d, c) = with_http("body_read_timeout = \"1500ms\"");
        assert_eq!(
            c.unwrap().http.body_read_timeout,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn bad_body_read_timeout_is_refused_naming_key_file_and_line() {
        for (value, says) in [("\"0s\"", "longer than zero"), ("\"soon\"", ""), ("5", "")] {
            let (_d, c) = with_http(&format!("max_headers = 50\nbody_read_timeout = {value}"));
            let errs = c.unwrap_err();
            let e = errs
                .iter()
                .find(|d| d.key == "ppu.http.body_read_timeout")
                .unwrap_or_else(|| panic!("{value}: {errs:#?}"));
            assert!(e.is_error());
            let loc = e.location.as_ref().expect("a file location");
            assert_eq!(loc.line_col.map(|(l, _)| l), Some(5), "{value}: {e}");
            let text = e.to_string();
            assert!(text.contains("ppu.toml"), "{text}");
            assert!(text.contains("key `ppu.http.body_read_timeout`"), "{text}");
            assert!(text.contains(says), "{text}");
        }
    }
}
