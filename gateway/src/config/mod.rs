//! Configuration of the three roles: typed, layered, validated, with precise errors.
//!
//! One TOML file per role, each a single top-level table named after the role
//! (`[registrar]`, `[ppe]`, `[ppu]`). Layers, later wins:
//!
//! 1. built-in defaults — the shipped `config/<role>.toml`, embedded at build time;
//! 2. the files given with `--config` (several allowed, in order);
//! 3. environment variables `POOLGATE_<ROLE>__<KEY>[__<KEY>...]`, e.g.
//!    `POOLGATE_REGISTRAR__LISTEN`, `POOLGATE_PPU__SESSION__KEEPALIVE_INTERVAL`,
//!    `POOLGATE_PPU__LISTENER__0__BIND` (numbers index existing array elements);
//! 4. `--set key.path=value` (the role prefix may be omitted: `--set listen=...`).
//!
//! Tables merge key by key; arrays (such as `[[ppu.listener]]`) are replaced whole.
//! Values from the environment and `--set` take the type the key expects; TOML
//! arrays/inline tables (`["a", "b"]`) are parsed as such, and a plain `a,b` is a
//! list where the key wants one (`POOLGATE_PPU__REGISTRARS=10.0.0.1:9899,10.0.0.2:9899`).
//!
//! [`load`] collects *every* problem in one pass: it records a failing value, falls
//! back to the default (or drops the value), tries again, then runs each role's
//! semantic checks (addresses, secrets, keep-alive timing, duplicates, ...).

/// Pushes `"<prefix>.<field>"` onto `out` for each listed field whose value differs between
/// `old` and `new` (compared by `Debug`, which redacts secrets): the keys a running role
/// cannot apply on reload, so the log names them.
macro_rules! restart_keys {
    ($out:expr, $prefix:literal, $old:expr, $new:expr; $($field:ident),* $(,)?) => {$(
        if format!("{:?}", $old.$field) != format!("{:?}", $new.$field) {
            $out.push(concat!($prefix, ".", stringify!($field)));
        }
    )*};
}
pub(crate) use restart_keys;

pub mod common;
pub mod de;
pub mod diag;
pub mod plugin;
pub mod ppe;
pub mod ppu;
pub mod registrar;
pub mod tree;
pub mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use common::MetricsConfig;
pub use diag::{Diagnostic, Location, Severity, Source};
pub use plugin::{PluginKind, PluginOptions};
pub use ppe::PpeConfig;
pub use ppu::PpuConfig;
pub use registrar::RegistrarConfig;
pub use values::{HostPort, Secret};

use tree::{Kind, Node, Seg};

/// The shipped default files, embedded: they document every key and *are* the defaults.
pub const DEFAULT_REGISTRAR_TOML: &str = include_str!("../../../config/registrar.toml");
/// Shipped `config/ppe.toml`.
pub const DEFAULT_PPE_TOML: &str = include_str!("../../../config/ppe.toml");
/// Shipped `config/ppu.toml`.
pub const DEFAULT_PPU_TOML: &str = include_str!("../../../config/ppu.toml");

/// Environment variable prefix of configuration overrides.
pub const ENV_PREFIX: &str = "POOLGATE_";

/// Guard against a pathological file: after this many repaired errors, stop.
const MAX_ERRORS: usize = 200;

/// Which part poolgate plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The registrar (ENRP server): owns the handlespace.
    Registrar,
    /// The proxy pool element in front of a legacy backend.
    Ppe,
    /// The proxy pool user in front of legacy clients.
    Ppu,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 3] = [Role::Registrar, Role::Ppe, Role::Ppu];

    /// The role's name: its top-level table and subcommand.
    pub fn name(self) -> &'static str {
        match self {
            Role::Registrar => "registrar",
            Role::Ppe => "ppe",
            Role::Ppu => "ppu",
        }
    }

    /// Look a role up by name.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The embedded default file of this role.
    pub fn default_toml(self) -> &'static str {
        match self {
            Role::Registrar => DEFAULT_REGISTRAR_TOML,
            Role::Ppe => DEFAULT_PPE_TOML,
            Role::Ppu => DEFAULT_PPU_TOML,
        }
    }

    /// The shipped file name of the defaults (for diagnostics).
    pub fn default_file_name(self) -> &'static str {
        match self {
            Role::Registrar => "config/registrar.toml",
            Role::Ppe => "config/ppe.toml",
            Role::Ppu => "config/ppu.toml",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where configuration comes from, besides the built-in defaults.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--config` files, in order (later wins).
    pub files: Vec<PathBuf>,
    /// `(name, value)` environment variables; only `POOLGATE_<ROLE>__...` ones are used.
    pub env: Vec<(String, String)>,
    /// `--set key.path=value` arguments, in order.
    pub sets: Vec<String>,
}

impl Sources {
    /// Files and `--set`s from the command line plus this process's environment.
    pub fn from_process(files: Vec<PathBuf>, sets: Vec<String>) -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Sources { files, env, sets }
    }
}

/// A role's configuration section: typed, deserializable, self-validating.
pub trait Section: DeserializeOwned + Sized {
    /// The role this section configures.
    const ROLE: Role;
    /// Semantic checks beyond types; may fill in derived fields (loaded secrets).
    fn validate(&mut self, check: &mut Checker<'_>);
    /// The metrics endpoint settings of this role.
    fn metrics(&self) -> &MetricsConfig;
    /// The worker threads the role's process runs (0 = one per CPU).
    fn threads(&self) -> u32;
}

/// A validated configuration plus its warnings.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The configuration, ready to use.
    pub config: T,
    /// Warnings (the configuration is usable despite them); print or log them.
    pub warnings: Vec<Diagnostic>,
}

/// A validated configuration of any role.
#[derive(Debug)]
pub enum AnyConfig {
    /// Registrar configuration.
    Registrar(RegistrarConfig),
    /// PPE configuration.
    Ppe(PpeConfig),
    /// PPU configuration.
    Ppu(PpuConfig),
}

impl AnyConfig {
    /// The role this configuration is for.
    pub fn role(&self) -> Role {
        match self {
            AnyConfig::Registrar(_) => Role::Registrar,
            AnyConfig::Ppe(_) => Role::Ppe,
            AnyConfig::Ppu(_) => Role::Ppu,
        }
    }

    /// The metrics endpoint settings.
    pub fn metrics(&self) -> &MetricsConfig {
        match self {
            AnyConfig::Registrar(c) => c.metrics(),
            AnyConfig::Ppe(c) => c.metrics(),
            AnyConfig::Ppu(c) => c.metrics(),
        }
    }

    /// The worker threads the process runs (0 = one per CPU).
    pub fn threads(&self) -> u32 {
        match self {
            AnyConfig::Registrar(c) => c.threads(),
            AnyConfig::Ppe(c) => c.threads(),
            AnyConfig::Ppu(c) => c.threads(),
        }
    }
}

/// Load, merge and validate a role's configuration: every problem at once.
///
/// `Err` holds all diagnostics (errors and warnings) when any error was found.
pub fn load<T: Section>(sources: &Sources) -> Result<Loaded<T>, Vec<Diagnostic>> {
    let role = T::ROLE;
    let mut diags = Vec::new();
    let defaults = builtin_tree(role);
    let mut tree = defaults.clone();

    for file in &sources.files {
        match read_file_tree(file) {
            Ok(t) => tree.merge(t),
            Err(d) => diags.push(d),
        }
    }
    apply_env(&mut tree, role, &sources.env, &mut diags);
    apply_sets(&mut tree, role, &sources.sets, &mut diags);
    check_top_level(&mut tree, role, &mut diags);

    let mut shrunk = Vec::new();
    let config = decode::<T>(&mut tree, &defaults, &mut diags, &mut shrunk);
    let Some(mut config) = config else {
        diag::sort(&mut diags);
        return Err(diags);
    };
    let mut checker = Checker {
        tree: &tree,
        role,
        diags: Vec::new(),
        shrunk,
    };
    config.validate(&mut checker);
    diags.extend(checker.diags);
    diag::sort(&mut diags);
    if diag::has_errors(&diags) {
        Err(diags)
    } else {
        Ok(Loaded {
            config,
            warnings: diags,
        })
    }
}

/// [`load`] for a role chosen at run time.
pub fn load_any(role: Role, sources: &Sources) -> Result<Loaded<AnyConfig>, Vec<Diagnostic>> {
    fn wrap<T>(
        r: Result<Loaded<T>, Vec<Diagnostic>>,
        f: fn(T) -> AnyConfig,
    ) -> Result<Loaded<AnyConfig>, Vec<Diagnostic>> {
        r.map(|l| Loaded {
            config: f(l.config),
            warnings: l.warnings,
        })
    }
    match role {
        Role::Registrar => wrap(load::<RegistrarConfig>(sources), AnyConfig::Registrar),
        Role::Ppe => wrap(load::<PpeConfig>(sources), AnyConfig::Ppe),
        Role::Ppu => wrap(load::<PpuConfig>(sources), AnyConfig::Ppu),
    }
}

/// Guess the role of configuration files from their top-level tables.
///
/// Returns the role when the files name exactly one role's table, else an
/// explanation. Unreadable or unparsable files are skipped here ([`load`] reports them).
pub fn infer_role(files: &[PathBuf]) -> Result<Role, String> {
    let mut found: Vec<Role> = Vec::new();
    for file in files {
        let Ok(tree) = read_file_tree(file) else {
            continue;
        };
        if let Kind::Table(entries) = &tree.kind {
            for (k, _) in entries {
                if let Some(r) = Role::from_name(k) {
                    if !found.contains(&r) {
                        found.push(r);
                    }
                }
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(
            "cannot tell the role: no [registrar], [ppe] or [ppu] table in the file(s); use --role"
                .into(),
        ),
        many => Err(format!(
            "cannot tell the role: the file(s) have tables for {}; use --role",
            many.iter()
                .map(|r| r.name())
                .collect::<Vec<_>>()
                .join(" and ")
        )),
    }
}

/// The embedded defaults of `role` as a tree.
fn builtin_tree(role: Role) -> Node {
    let source = Arc::new(Source::Builtin(role.default_file_name()));
    // The shipped files are tested to parse (see tests below); failing here is a build bug.
    Node::parse(role.default_toml(), source)
        .unwrap_or_else(|d| panic!("built-in defaults do not parse: {d}"))
}

/// Read and parse one configuration file.
fn read_file_tree(path: &Path) -> Result<Node, Diagnostic> {
    let source = Arc::new(Source::File(path.to_path_buf()));
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::error(
            Some(Location::whole(source.clone())),
            "",
            format!("cannot read configuration file: {e}"),
        )
    })?;
    Node::parse(&text, source)
}

fn apply_env(tree: &mut Node, role: Role, env: &[(String, String)], diags: &mut Vec<Diagnostic>) {
    let mut env: Vec<&(String, String)> = env.iter().collect();
    // Deterministic order whatever the process environment's order is.
    env.sort();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.len() < 2 || parts[0] != role.name() {
            // Other roles' variables and non-configuration ones (POOLGATE_LOG) are not ours.
            continue;
        }
        let at = Location::whole(Arc::new(Source::Env(name.clone())));
        let segs = parts
            .iter()
            .map(|p| match p.parse::<usize>() {
                Ok(i) => Some(Seg::Index(i)),
                Err(_) if !p.is_empty() => Some(Seg::Key(p.clone())),
                Err(_) => None,
            })
            .collect::<Option<Vec<_>>>();
        let Some(segs) = segs else {
            diags.push(Diagnostic::error(
                Some(at),
                "",
                "empty key segment in variable name",
            ));
            continue;
        };
        let node = tree::override_value(value, at.clone());
        if let Err(why) = tree.set(&segs, node) {
            diags.push(Diagnostic::error(Some(at), tree::render_path(&segs), why));
        }
    }
}

fn apply_sets(tree: &mut Node, role: Role, sets: &[String], diags: &mut Vec<Diagnostic>) {
    for arg in sets {
        let at = Location::whole(Arc::new(Source::Set(arg.clone())));
        let Some((key, value)) = arg.split_once('=') else {
            diags.push(Diagnostic::error(Some(at), "", "expected key.path=value"));
            continue;
        };
        let Some(mut segs) = tree::parse_path(key.trim()) else {
            diags.push(Diagnostic::error(
                Some(at),
                key.trim(),
                "not a key path (write e.g. ppu.session.keepalive_interval)",
            ));
            continue;
        };
        if segs.first() != Some(&Seg::Key(role.name().to_string())) {
            segs.insert(0, Seg::Key(role.name().to_string()));
        }
        let node = tree::override_value(value, at.clone());
        if let Err(why) = tree.set(&segs, node) {
            diags.push(Diagnostic::error(Some(at), tree::render_path(&segs), why));
        }
    }
}

/// Reject top-level keys other than the role's table (e.g. a `[ppe]` table given
/// to the registrar) and drop them.
fn check_top_level(tree: &mut Node, role: Role, diags: &mut Vec<Diagnostic>) {
    let Kind::Table(entries) = &mut tree.kind else {
        return;
    };
    entries.retain(|(k, node)| {
        if k == role.name() {
            return true;
        }
        let why = match Role::from_name(k) {
            Some(other) => {
                format!("this is a {other} table, but the configuration is for the {role} role")
            }
            None => format!(
                "unknown key; the only top-level table of a {role} configuration is [{role}]"
            ),
        };
        diags.push(Diagnostic::error(
            node.key_at.clone().or(node.at.clone()),
            node.path.clone(),
            why,
        ));
        false
    });
}

/// Deserialize the role's section, repairing and retrying to collect every type error.
///
/// `shrunk` receives the paths of arrays that lost elements in the repair, so that
/// validation does not report their emptiness as a second, derived error.
fn decode<T: Section>(
    tree: &mut Node,
    defaults: &Node,
    diags: &mut Vec<Diagnostic>,
    shrunk: &mut Vec<String>,
) -> Option<T> {
    let role_seg = Seg::Key(T::ROLE.name().to_string());
    // Paths we removed; a "missing field" error they cause is a consequence, not news.
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_ERRORS {
        let Some(section) = tree.get(std::slice::from_ref(&role_seg)) else {
            diags.push(Diagnostic::error(
                None,
                T::ROLE.name(),
                "the role's table is missing",
            ));
            return None;
        };
        let err = match de::from_node::<T>(section) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let mut at = vec![role_seg.clone()];
        at.extend(err.at.clone().unwrap_or_default());
        let node = tree.nearest(&at);
        let missing = err
            .message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string);

        if let Some(field) = &missing {
            let mut child = at.clone();
            child.push(Seg::Key(field.clone()));
            if !removed.contains(&child) {
                diags.push(Diagnostic::error(
                    node.at.clone(),
                    node.path.clone(),
                    format!("missing key `{field}`"),
                ));
            }
            // Only array elements can miss keys (tables get defaults): drop the element.
            if matches!(at.last(), Some(Seg::Index(_))) && tree.remove(&at) {
                shrunk.push(tree::render_path(&at[..at.len() - 1]));
                continue;
            }
            return None;
        }

        let (loc, path) = if err.unknown_key {
            (node.key_at.clone().or(node.at.clone()), node.path.clone())
        } else {
            (node.at.clone().or(node.key_at.clone()), node.path.clone())
        };
        let message = if err.unknown_key {
            err.message.replacen("unknown field", "unknown key", 1)
        } else {
            err.message.clone()
        };
        diags.push(Diagnostic::error(loc, path, message));

        // Repair: the default where one exists at the same place (never inside arrays,
        // whose elements have no defaults), otherwise drop the value.
        let in_array = at.iter().any(|s| matches!(s, Seg::Index(_)));
        let repaired = match defaults.get(&at) {
            Some(def) if !in_array && !err.unknown_key && tree.get(&at) != Some(def) => {
                tree.replace(&at, def.clone())
            }
            _ => {
                let ok = tree.remove(&at);
                if ok {
                    if matches!(at.last(), Some(Seg::Index(_))) {
                        shrunk.push(tree::render_path(&at[..at.len() - 1]));
                    }
                    removed.push(at.clone());
                }
                ok
            }
        };
        if !repaired {
            return None;
        }
    }
    diags.push(Diagnostic::error(
        None,
        "",
        format!("more than {MAX_ERRORS} errors; stopped checking"),
    ));
    None
}

/// Semantic validation context: records diagnostics at the location of a key path.
pub struct Checker<'t> {
    tree: &'t Node,
    role: Role,
    diags: Vec<Diagnostic>,
    /// Arrays that lost elements to earlier errors: problems of the array as a whole
    /// (such as being empty now) follow from those and are not reported again.
    shrunk: Vec<String>,
}

impl Checker<'_> {
    /// The role being validated.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where `path` (e.g. `ppu.listener[1].bind`) was written, and its display path.
    pub fn locate(&self, path: &str) -> (String, Option<Location>) {
        let Some(segs) = tree::parse_path(path) else {
            return (path.to_string(), None);
        };
        match self.tree.get(&segs) {
            Some(n) => (n.path.clone(), n.at.clone().or(n.key_at.clone())),
            None => {
                let n = self.tree.nearest(&segs);
                (path.to_string(), n.at.clone())
            }
        }
    }

    /// Record an error at `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        if self.shrunk.iter().any(|s| s == path) {
            return;
        }
        let (key, loc) = self.locate(path);
        self.diags.push(Diagnostic::error(loc, key, message));
    }

    /// Record a warning at `path`.
    pub fn warning(&mut self, path: &str, message: impl Into<String>) {
        let (key, loc) = self.locate(path);
        self.diags.push(Diagnostic::warning(loc, key, message));
    }

    /// Resolve a file path written at `path`: relative paths are relative to the
    /// directory of the file that set them (the working directory otherwise).
    pub fn resolve_file(&self, path: &str, file: &Path) -> PathBuf {
        if file.is_absolute() {
            return file.to_path_buf();
        }
        let (_, loc) = self.locate(path);
        match loc.as_ref().map(|l| &*l.source) {
            Some(Source::File(f)) => f
                .parent()
                .map_or_else(|| file.to_path_buf(), |d| d.join(file)),
            _ => file.to_path_buf(),
        }
    }

    /// Read a secret file: errors when missing or unreadable, warns when group- or
    /// world-readable (anyone on the host in that group could impersonate us).
    pub fn read_secret_file(&mut self, path: &str, file: &Path) -> Option<Vec<u8>> {
        let full = self.resolve_file(path, file);
        match std::fs::read(&full) {
            Ok(bytes) => {
                #[cfg(unix)]
                if let Ok(meta) = std::fs::metadata(&full) {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode();
                    if mode & 0o077 != 0 {
                        self.warning(
                            path,
                            format!(
                                "secret file {} is readable by group or others (mode {:03o}); chmod 600 it",
                                full.display(),
                                mode & 0o777
                            ),
                        );
                    }
                }
                Some(bytes)
            }
            Err(e) => {
                self.error(
                    path,
                    format!("cannot read secret file {}: {e}", full.display()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources_with(text: &str) -> (tempdir::TempDir, Sources) {
        let dir = tempdir::TempDir::new();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        (
            dir,
            Sources {
                files: vec![file],
                ..Sources::default()
            },
        )
    }

    /// A tiny self-cleaning temporary directory (no extra dependency needed).
    pub(crate) mod tempdir {
        use std::path::{Path, PathBuf};
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct TempDir(PathBuf);

        impl TempDir {
            pub fn new() -> Self {
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "poolgate-unit-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                TempDir(p)
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn every_shipped_file_parses_and_decodes() {
        // Reads the files in config/ from disk too, so a new file there is covered.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            seen += 1;
            let role = infer_role(std::slice::from_ref(&path)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                text,
                role.default_toml(),
                "{} differs from the embedded copy",
                path.display()
            );
            let tree = builtin_tree(role);
            let mut diags = Vec::new();
            let mut t2 = tree.clone();
            let ok = match role {
                Role::Registrar => {
                    decode::<RegistrarConfig>(&mut t2, &tree, &mut diags, &mut Vec::new()).is_some()
                }
                Role::Ppe => {
                    decode::<PpeConfig>(&mut t2, &tree, &mut diags, &mut Vec::new()).is_some()
                }
                Role::Ppu => {
                    decode::<PpuConfig>(&mut t2, &tree, &mut diags, &mut Vec::new()).is_some()
                }
            };
            assert!(ok && diags.is_empty(), "{}: {diags:?}", path.display());
        }
        assert_eq!(seen, 3);
    }

    #[test]
    fn shipped_defaults_validate_except_the_pool_key() {
        load::<RegistrarConfig>(&Sources::default()).unwrap();
        load::<PpuConfig>(&Sources::default()).unwrap();
        // The PPE cannot ship a pool key: the operator must make one.
        let errs = load::<PpeConfig>(&Sources::default()).unwrap_err();
        assert_eq!(errs.iter().filter(|d| d.is_error()).count(), 1, "{errs:?}");
        assert_eq!(errs[0].key, "ppe.key");
    }

    /// `TransportSettings::default()` (used where no file is read, e.g. the lab) is
    /// what the PPU and PPE ship; the registrar ships a shorter heartbeat interval.
    #[test]
    fn shipped_transport_sections_match_the_defaults() {
        let d = common::TransportSettings::default();
        assert_eq!(
            load::<PpuConfig>(&Sources::default())
                .unwrap()
                .config
                .transport,
            d
        );
        // The shipped PPE file has no pool key, so it is decoded, not loaded.
        let tree = builtin_tree(Role::Ppe);
        let ppe = decode::<PpeConfig>(&mut tree.clone(), &tree, &mut Vec::new(), &mut Vec::new())
            .expect("shipped ppe.toml decodes")
            .transport;
        assert_eq!(ppe, d);
        let r = load::<RegistrarConfig>(&Sources::default())
            .unwrap()
            .config
            .transport;
        assert_eq!(r.heartbeat_interval, std::time::Duration::from_secs(5));
        assert_eq!(
            common::TransportSettings {
                heartbeat_interval: d.heartbeat_interval,
                ..r
            },
            d
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let (_d1, mut s) =
            sources_with("[registrar]\nlisten = [\"127.0.0.1:1000\"]\nmax_bad_pe_report = 7\n");
        let d2 = tempdir::TempDir::new();
        let f2 = d2.path().join("b.toml");
        std::fs::write(&f2, "[registrar]\nlisten = [\"127.0.0.1:2000\"]\n").unwrap();
        s.files.push(f2);
        let c = load::<RegistrarConfig>(&s).unwrap().config;
        assert_eq!(c.listen[0].0.port(), 2000);
        assert_eq!(c.max_bad_pe_report, 7);

        s.env.push((
            "POOLGATE_REGISTRAR__LISTEN".into(),
            "[\"127.0.0.1:3000\"]".into(),
        ));
        s.env.push((
            "POOLGATE_REGISTRAR__KEEPALIVE__INTERVAL".into(),
            "2s".into(),
        ));
        s.env.push((
            "POOLGATE_REGISTRAR__KEEPALIVE__TIMEOUT".into(),
            "500ms".into(),
        ));
        s.env.push(("POOLGATE_PPU__NOT_OURS".into(), "x".into()));
        let c = load::<RegistrarConfig>(&s).unwrap().config;
        assert_eq!(c.listen[0].0.port(), 3000);
        assert_eq!(c.keepalive.interval, std::time::Duration::from_secs(2));

        s.sets.push("registrar.listen=[\"127.0.0.1:4000\"]".into());
        s.sets.push("announce.enabled=true".into());
        s.sets.push("max_bad_pe_report=1".into());
        let c = load::<RegistrarConfig>(&s).unwrap().config;
        assert_eq!(c.listen[0].0.port(), 4000);
        assert_eq!(c.max_bad_pe_report, 1);
        assert!(c.announce.enabled);

        // A plain comma-separated value is a list where a list is wanted.
        s.sets.push("listen=127.0.0.1:5000, [::1]:5001".into());
        let c = load::<RegistrarConfig>(&s).unwrap().config;
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.listen[1].0.port(), 5001);
    }

    #[test]
    fn collects_all_type_errors_in_one_pass() {
        let (_d, s) = sources_with(
            "[registrar]\nbogus = 1\nmax_bad_pe_report = \"many\"\nlisten = [\"nowhere\"]\n\n[registrar.keepalive]\ninterval = \"soon\"\n",
        );
        let errs = load::<RegistrarConfig>(&s).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert!(keys.contains(&"registrar.bogus"), "{errs:#?}");
        assert!(keys.contains(&"registrar.max_bad_pe_report"), "{errs:#?}");
        assert!(keys.contains(&"registrar.listen[0]"), "{errs:#?}");
        assert!(keys.contains(&"registrar.keepalive.interval"), "{errs:#?}");
        let bogus = errs.iter().find(|d| d.key == "registrar.bogus").unwrap();
        assert_eq!(bogus.location.as_ref().unwrap().line_col, Some((2, 1)));
        let interval = errs
            .iter()
            .find(|d| d.key == "registrar.keepalive.interval")
            .unwrap();
        assert_eq!(interval.location.as_ref().unwrap().line_col, Some((7, 12)));
    }

    #[test]
    fn wrong_role_table_and_bad_overrides_are_reported() {
        let (_d, mut s) = sources_with("[ppe]\npool = \"x\"\n");
        s.sets.push("nonsense".into());
        s.env
            .push(("POOLGATE_REGISTRAR__PEER__5__ID".into(), "1".into()));
        let errs = load::<RegistrarConfig>(&s).unwrap_err();
        assert!(
            errs.iter()
                .any(|d| d.key == "ppe" && d.message.contains("ppe table")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|d| d.message.contains("key.path=value")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|d| d.message.contains("out of range")),
            "{errs:#?}"
        );
    }

    #[test]
    fn role_inference() {
        let (_d, s) = sources_with("[ppu]\n");
        assert_eq!(infer_role(&s.files), Ok(Role::Ppu));
        let (_d2, s2) = sources_with("[ppu]\n[ppe]\n");
        assert!(infer_role(&s2.files).unwrap_err().contains("ppu and ppe"));
        let (_d3, s3) = sources_with("x = 1\n");
        assert!(infer_role(&s3.files).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// (section, line, key reported) — independent mistakes, one per key.
        const MISTAKES: &[(&str, &str, &str)] = &[
            ("ppu", "bogus_a = 1", "ppu.bogus_a"),
            ("ppu", "drain_grace = 5", "ppu.drain_grace"),
            ("ppu", "registrars = [\"nope\"]", "ppu.registrars[0]"),
            (
                "ppu.session",
                "keepalive_interval = \"x\"",
                "ppu.session.keepalive_interval",
            ),
            (
                "ppu.session",
                "failover_max_attempts = -1",
                "ppu.session.failover_max_attempts",
            ),
            ("ppu.session", "bogus_b = true", "ppu.session.bogus_b"),
            ("ppu.resolution", "timeout = 0", "ppu.resolution.timeout"),
            ("ppu.metrics", "listen = \"x\"", "ppu.metrics.listen"),
            ("ppu.metrics", "enabled = \"yes\"", "ppu.metrics.enabled"),
        ];

        /// Every subset of the mistakes (all of them, exhaustively) is reported
        /// exactly: each mistake once, with a line, and no derived errors.
        #[test]
        fn every_mistake_subset_is_reported_exactly() {
            for mask in 0u32..(1 << MISTAKES.len()) {
                let mut text = String::new();
                for section in ["ppu", "ppu.session", "ppu.resolution", "ppu.metrics"] {
                    text.push_str(&format!("[{section}]\n"));
                    for (i, (sec, line, _)) in MISTAKES.iter().enumerate() {
                        if *sec == section && mask & (1 << i) != 0 {
                            text.push_str(line);
                            text.push('\n');
                        }
                    }
                }
                let (_d, s) = sources_with(&text);
                let diags = match load::<PpuConfig>(&s) {
                    Ok(l) => l.warnings,
                    Err(d) => d,
                };
                let mut want: Vec<&str> = MISTAKES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, m)| m.2)
                    .collect();
                let mut got: Vec<&str> = diags.iter().map(|d| d.key.as_str()).collect();
                want.sort();
                got.sort();
                assert_eq!(got, want, "mask {mask:#b}: {diags:#?}");
                for d in &diags {
                    assert!(
                        d.location.as_ref().and_then(|l| l.line_col).is_some(),
                        "{d}"
                    );
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Arbitrary file contents never panic or hang, whatever the role.
            #[test]
            fn loading_is_total(text in "(\\[{0,2}(ppu|ppe|registrar)(\\.[a-z_]{1,12})?\\]{0,2}\n|[a-z_]{1,10} = (\"[^\"\\\\\n]{0,10}\"|-?[0-9]{1,5}|true|\\[\\]|\\{\\})\n|[ -~]{0,20}\n){0,12}") {
                let (_d, s) = sources_with(&text);
                let _ = load::<PpuConfig>(&s);
                let _ = load::<PpeConfig>(&s);
                let _ = load::<RegistrarConfig>(&s);
            }

            /// Arbitrary overrides never panic.
            #[test]
            fn overrides_are_total(key in "[a-z_.\\[\\]0-9]{0,30}", value in "[ -~]{0,30}") {
                let s = Sources {
                    env: vec![(format!("POOLGATE_PPU__{}", key.replace('.', "__").to_uppercase()), value.clone())],
                    sets: vec![format!("{key}={value}")],
                    ..Sources::default()
                };
                let _ = load::<PpuConfig>(&s);
            }
        }
    }
}
