//! The TOML files a test pool runs from. The texts are fixed on purpose: tests edit them
//! in place (a key block, a weight, a registrar option) and send SIGHUP.

use std::path::Path;

/// The pool key the test pools share (64 hex digits; `[[ppe.key]] id = 1`).
pub const TEST_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path`; panics when it cannot.
pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A registrar (id 1) on UDP `port`: endpoint keep-alive 500 ms / 500 ms, no metrics.
pub fn registrar_toml(port: u16) -> String {
    format!(
        "[registrar]\nid = 1\nlisten = [\"127.0.0.1:{port}\"]\n\
         [registrar.keepalive]\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
         [registrar.metrics]\nenabled = false\n"
    )
}

/// What differs between the PPEs of the test pools.
pub struct PpeToml<'a> {
    /// Pool handle.
    pub pool: &'a str,
    /// PE id.
    pub id: u32,
    /// The registrar's address (`127.0.0.1:port`).
    pub registrar: &'a str,
    /// The PPE's UDP port.
    pub udp: u16,
    /// Session-state plugin.
    pub plugin: &'a str,
    /// Body of the `[ppe.policy]` table.
    pub policy: &'a str,
    /// The backend's TCP port on loopback.
    pub backend_port: u16,
    /// Lines appended at the end (e.g. a `[ppe.plugin_options]` table).
    pub extra: &'a str,
}

impl PpeToml<'_> {
    /// The file's text: registration life 5 s, cookie every 10 ms, backend checks every
    /// 200 ms, no metrics, [`TEST_KEY`] as key 1.
    pub fn render(&self) -> String {
        format!(
            "[ppe]\npool = \"{pool}\"\nid = {id}\nregistrars = [\"{reg}\"]\nregistration_life = \"5s\"\n\
             listen = [\"127.0.0.1:{udp}\"]\nplugin = \"{plugin}\"\ncookie_interval = \"10ms\"\n\
             drain_grace = \"1s\"\n\
             [[ppe.key]]\nid = 1\nkey = \"{TEST_KEY}\"\n\
             [ppe.policy]\n{policy}\n\
             [ppe.backend]\naddress = \"127.0.0.1:{backend_port}\"\nconnect_timeout = \"500ms\"\n\
             check_interval = \"200ms\"\ncheck_timeout = \"200ms\"\n\
             [ppe.metrics]\nenabled = false\n{extra}",
            pool = self.pool,
            id = self.id,
            reg = self.registrar,
            udp = self.udp,
            plugin = self.plugin,
            policy = self.policy,
            backend_port = self.backend_port,
            extra = self.extra,
        )
    }
}

/// The head of a PPU file (listeners follow): session keep-alive interval = timeout =
/// `keepalive`, up to 3 failover attempts, failure reports on, metrics on
/// `metrics_port`, and `[ppu.http]` with these lines when `http` is given.
pub fn ppu_toml(registrar: &str, keepalive: &str, http: Option<&str>, metrics_port: u16) -> String {
    let http = http.map_or(String::new(), |h| format!("[ppu.http]\n{h}\n"));
    format!(
        "[ppu]\nregistrars = [\"{registrar}\"]\ndrain_grace = \"1s\"\n\
         [ppu.resolution]\ncache_staleness = \"100ms\"\ntimeout = \"500ms\"\n\
         [ppu.session]\nkeepalive_interval = \"{keepalive}\"\nkeepalive_timeout = \"{keepalive}\"\n\
         failover_max_attempts = 3\nreport_failures = true\n\
         {http}\
         [ppu.metrics]\nenabled = true\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    )
}

/// A `[[ppu.listener]]` on `127.0.0.1:port` for `pool` (more keys may follow).
pub fn listener_toml(name: &str, kind: &str, port: u16, pool: &str, plugin: &str) -> String {
    format!(
        "[[ppu.listener]]\nname = \"{name}\"\nkind = \"{kind}\"\nbind = \"127.0.0.1:{port}\"\n\
         pool = \"{pool}\"\nplugin = \"{plugin}\"\n"
    )
}
