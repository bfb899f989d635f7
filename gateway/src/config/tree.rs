//! The configuration tree: TOML values that remember where they were written.
//!
//! Each layer (built-in defaults, files, environment, `--set`) becomes a [`Node`]
//! tree; layers merge table by table, later wins, and any non-table value (arrays
//! included) is replaced whole. Keeping the location on every node is what lets
//! `poolgate check` point at a file, line and column for every error.

use std::sync::Arc;

use super::diag::{Diagnostic, Location, Source};

/// A scalar TOML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A date/time, kept as written.
    Datetime(String),
    /// Untyped text from the environment or `--set`: it becomes whatever type the
    /// key expects (number, boolean or string), so `POOLGATE_PPU__X=5` and
    /// `POOLGATE_PPU__NAME=5` both work.
    Text(String),
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A table, keys in written order.
    Table(Vec<(String, Node)>),
    /// An array (of values or of tables).
    Array(Vec<Node>),
    /// A single value.
    Scalar(Scalar),
}

/// A value with its key path and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: Kind,
    /// Dotted key path as written, e.g. `ppu.listener[1].bind`.
    pub path: String,
    /// Where the value (or table header) was written.
    pub at: Option<Location>,
    /// Where the key was written (unknown-key errors point here).
    pub key_at: Option<Location>,
}

/// One step of a path inside the current tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Render a path of segments as `a.b[2].c`.
pub fn render_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Parse `a.b[2].c` or `a.b.2.c` into segments; `None` when malformed.
pub fn parse_path(text: &str) -> Option<Vec<Seg>> {
    let mut segs = Vec::new();
    for part in text.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() {
            return None;
        }
        match name.parse::<usize>() {
            Ok(i) if !segs.is_empty() => segs.push(Seg::Index(i)),
            _ => {
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return None;
                }
                segs.push(Seg::Key(name.to_string()));
            }
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let idx: usize = rest.get(1..close)?.parse().ok()?;
            segs.push(Seg::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return None;
            }
        }
    }
    Some(segs)
}

impl Node {
    /// An empty table at the root.
    pub fn empty_root() -> Self {
        Node {
            kind: Kind::Table(Vec::new()),
            path: String::new(),
            at: None,
            key_at: None,
        }
    }

    /// Parse a TOML document into a tree; a syntax error becomes one diagnostic.
    pub fn parse(text: &str, source: Arc<Source>) -> Result<Node, Diagnostic> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            let loc = match e.span() {
                Some(span) => Location::at_offset(source.clone(), text, span.start),
                None => Location::whole(source.clone()),
            };
            // toml_edit's message repeats the position and a source excerpt; keep the reason.
            let reason = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            Diagnostic::error(Some(loc), "", format!("not valid TOML: {reason}"))
        })?;
        let b = Builder { text, source };
        Ok(b.table(doc.as_table(), String::new(), None, None))
    }

    /// The child at `segs`, if present.
    pub fn get(&self, segs: &[Seg]) -> Option<&Node> {
        let mut cur = self;
        for s in segs {
            cur = match (s, &cur.kind) {
                (Seg::Key(k), Kind::Table(entries)) => {
                    &entries.iter().find(|(name, _)| name == k)?.1
                }
                (Seg::Index(i), Kind::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The deepest existing node along `segs` (the root when nothing matches).
    pub fn nearest(&self, segs: &[Seg]) -> &Node {
        let mut cur = self;
        for s in segs {
            let next = match (s, &cur.kind) {
                (Seg::Key(k), Kind::Table(entries)) => {
                    entries.iter().find(|(name, _)| name == k).map(|e| &e.1)
                }
                (Seg::Index(i), Kind::Array(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    fn get_mut(&mut self, segs: &[Seg]) -> Option<&mut Node> {
        let mut cur = self;
        for s in segs {
            cur = match (s, &mut cur.kind) {
                (Seg::Key(k), Kind::Table(entries)) => {
                    &mut entries.iter_mut().find(|(name, _)| name == k)?.1
                }
                (Seg::Index(i), Kind::Array(items)) => items.get_mut(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Remove the node at `segs`; returns whether something was removed.
    pub fn remove(&mut self, segs: &[Seg]) -> bool {
        let Some((last, parent)) = segs.split_last() else {
            return false;
        };
        let Some(parent) = self.get_mut(parent) else {
            return false;
        };
        match (last, &mut parent.kind) {
            (Seg::Key(k), Kind::Table(entries)) => {
                let before = entries.len();
                entries.retain(|(name, _)| name != k);
                entries.len() != before
            }
            (Seg::Index(i), Kind::Array(items)) if *i < items.len() => {
                items.remove(*i);
                true
            }
            _ => false,
        }
    }

    /// Replace the node at `segs` with `with`; returns whether it existed.
    pub fn replace(&mut self, segs: &[Seg], with: Node) -> bool {
        match self.get_mut(segs) {
            Some(n) => {
                *n = with;
                true
            }
            None => false,
        }
    }

    /// Merge `over` into `self`: tables merge key by key, everything else is replaced.
    pub fn merge(&mut self, over: Node) {
        match (&mut self.kind, over.kind) {
            (Kind::Table(base), Kind::Table(entries)) => {
                for (k, v) in entries {
                    match base.iter_mut().find(|(name, _)| *name == k) {
                        Some((_, existing)) => existing.merge(v),
                        None => base.push((k, v)),
                    }
                }
            }
            (_, kind) => {
                *self = Node {
                    kind,
                    path: over.path,
                    at: over.at,
                    key_at: over.key_at,
                };
            }
        }
    }

    /// Set the value at `segs` (creating tables on the way), as from env or `--set`.
    ///
    /// Array indices must exist: overrides change elements, they do not invent them.
    pub fn set(&mut self, segs: &[Seg], value: Node) -> Result<(), String> {
        let mut cur = self;
        for (depth, s) in segs.iter().enumerate() {
            let last = depth + 1 == segs.len();
            let here = render_path(&segs[..=depth]);
            match s {
                Seg::Key(k) => {
                    if !matches!(cur.kind, Kind::Table(_)) {
                        return Err(format!("`{}` is not a table", render_path(&segs[..depth])));
                    }
                    let Kind::Table(entries) = &mut cur.kind else {
                        unreachable!("checked just above")
                    };
                    let pos = match entries.iter().position(|(name, _)| name == k) {
                        Some(p) => p,
                        None => {
                            entries.push((
                                k.clone(),
                                Node {
                                    kind: Kind::Table(Vec::new()),
                                    path: here.clone(),
                                    at: value.at.clone(),
                                    key_at: value.at.clone(),
                                },
                            ));
                            entries.len() - 1
                        }
                    };
                    if last {
                        entries[pos].1 = Node {
                            path: here,
                            ..value
                        };
                        return Ok(());
                    }
                    cur = &mut entries[pos].1;
                }
                Seg::Index(i) => {
                    let Kind::Array(items) = &mut cur.kind else {
                        return Err(format!("`{}` is not an array", render_path(&segs[..depth])));
                    };
                    let len = items.len();
                    let Some(item) = items.get_mut(*i) else {
                        return Err(format!(
                            "index {i} is out of range: `{}` has {len} element(s)",
                            render_path(&segs[..depth])
                        ));
                    };
                    if last {
                        *item = Node {
                            path: here,
                            ..value
                        };
                        return Ok(());
                    }
                    cur = item;
                }
            }
        }
        Err("empty key path".to_string())
    }
}

/// Turn an override's text into a node: TOML arrays and inline tables are parsed,
/// anything else stays [`Scalar::Text`] and takes the type the key expects.
pub fn override_value(text: &str, at: Location) -> Node {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let doc = format!("v = {text}");
        if let Ok(mut tree) = Node::parse(&doc, at.source.clone()) {
            if let Kind::Table(entries) = &mut tree.kind {
                if let Some((_, mut v)) = entries.pop() {
                    relocate(&mut v, &at);
                    return v;
                }
            }
        }
    }
    Node {
        kind: Kind::Scalar(Scalar::Text(text.to_string())),
        path: String::new(),
        at: Some(at.clone()),
        key_at: Some(at),
    }
}

/// Give every node of an override the override's location (positions inside the
/// synthetic document would mislead).
fn relocate(node: &mut Node, at: &Location) {
    node.at = Some(at.clone());
    node.key_at = Some(at.clone());
    match &mut node.kind {
        Kind::Table(entries) => entries.iter_mut().for_each(|(_, n)| relocate(n, at)),
        Kind::Array(items) => items.iter_mut().for_each(|n| relocate(n, at)),
        Kind::Scalar(_) => {}
    }
}

struct Builder<'t> {
    text: &'t str,
    source: Arc<Source>,
}

impl Builder<'_> {
    fn loc(&self, span: Option<std::ops::Range<usize>>) -> Option<Location> {
        span.map(|s| Location::at_offset(self.source.clone(), self.text, s.start))
    }

    fn child_path(parent: &str, key: &str) -> String {
        if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        }
    }

    fn table(
        &self,
        t: &toml_edit::Table,
        path: String,
        at: Option<Location>,
        key_at: Option<Location>,
    ) -> Node {
        let mut entries = Vec::new();
        for (k, item) in t.iter() {
            let child = Self::child_path(&path, k);
            let key_at = self.loc(t.key(k).and_then(|key| key.span()));
            entries.push((k.to_string(), self.item(item, child, key_at)));
        }
        Node {
            kind: Kind::Table(entries),
            path,
            at: at.or_else(|| self.loc(t.span())),
            key_at,
        }
    }

    fn item(&self, item: &toml_edit::Item, path: String, key_at: Option<Location>) -> Node {
        match item {
            toml_edit::Item::Table(t) => {
                let at = self.loc(t.span()).or_else(|| key_at.clone());
                self.table(t, path, at, key_at)
            }
            toml_edit::Item::ArrayOfTables(a) => {
                let items = a
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let at = self.loc(t.span());
                        self.table(t, format!("{path}[{i}]"), at.clone(), at)
                    })
                    .collect();
                Node {
                    kind: Kind::Array(items),
                    at: self.loc(a.span()).or_else(|| key_at.clone()),
                    path,
                    key_at,
                }
            }
            toml_edit::Item::Value(v) => self.value(v, path, key_at),
            toml_edit::Item::None => Node {
                kind: Kind::Table(Vec::new()),
                path,
                at: key_at.clone(),
                key_at,
            },
        }
    }

    fn value(&self, v: &toml_edit::Value, path: String, key_at: Option<Location>) -> Node {
        use toml_edit::Value as V;
        let at = self.loc(v.span()).or_else(|| key_at.clone());
        let kind = match v {
            V::String(s) => Kind::Scalar(Scalar::Str(s.value().clone())),
            V::Integer(i) => Kind::Scalar(Scalar::Int(*i.value())),
            V::Float(f) => Kind::Scalar(Scalar::Float(*f.value())),
            V::Boolean(b) => Kind::Scalar(Scalar::Bool(*b.value())),
            V::Datetime(d) => Kind::Scalar(Scalar::Datetime(d.value().to_string())),
            V::Array(a) => Kind::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let p = format!("{path}[{i}]");
                        let at = self.loc(v.span());
                        self.value(v, p, at)
                    })
                    .collect(),
            ),
            V::InlineTable(t) => {
                let mut entries = Vec::new();
                for (k, v) in t.iter() {
                    let child = Self::child_path(&path, k);
                    let key_at = self.loc(t.key(k).and_then(|key| key.span()));
                    entries.push((k.to_string(), self.value(v, child, key_at)));
                }
                Kind::Table(entries)
            }
        };
        Node {
            kind,
            path,
            at,
            key_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Arc<Source> {
        Arc::new(Source::File("t.toml".into()))
    }

    fn segs(p: &str) -> Vec<Seg> {
        parse_path(p).unwrap()
    }

    #[test]
    fn parse_records_paths_and_lines() {
        let text = "[ppu]\nregistrars = [\"a\", \"b\"]\n\n[[ppu.listener]]\nname = \"x\"\n\n[[ppu.listener]]\nname = \"y\"\n";
        let t = Node::parse(text, src()).unwrap();
        let y = t.get(&segs("ppu.listener[1].name")).unwrap();
        assert_eq!(y.path, "ppu.listener[1].name");
        assert_eq!(y.at.as_ref().unwrap().line_col, Some((8, 8)));
        assert_eq!(y.key_at.as_ref().unwrap().line_col, Some((8, 1)));
        let b = t.get(&segs("ppu.registrars[1]")).unwrap();
        assert_eq!(b.kind, Kind::Scalar(Scalar::Str("b".into())));
        assert_eq!(b.at.as_ref().unwrap().line_col, Some((2, 20)));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let d = Node::parse("[a]\nb = = 1\n", src()).unwrap_err();
        assert!(d.is_error());
        assert_eq!(d.location.unwrap().line_col.map(|l| l.0), Some(2));
        let dup = Node::parse("[a]\nb = 1\nb = 2\n", src()).unwrap_err();
        assert_eq!(dup.location.unwrap().line_col.map(|l| l.0), Some(3));
    }

    #[test]
    fn merge_tables_deep_and_replace_arrays_whole() {
        let mut base =
            Node::parse("[r]\na = 1\nb = 2\nlist = [1, 2, 3]\n[r.t]\nx = 1\n", src()).unwrap();
        let over = Node::parse("[r]\nb = 20\nlist = [9]\n[r.t]\ny = 2\n", src()).unwrap();
        base.merge(over);
        let int = |p: &str| match &base.get(&segs(p)).unwrap().kind {
            Kind::Scalar(Scalar::Int(i)) => *i,
            other => panic!("{other:?}"),
        };
        assert_eq!(int("r.a"), 1);
        assert_eq!(int("r.b"), 20);
        assert_eq!(int("r.t.x"), 1);
        assert_eq!(int("r.t.y"), 2);
        assert_eq!(int("r.list[0]"), 9);
        assert!(base.get(&segs("r.list[1]")).is_none());
    }

    #[test]
    fn set_creates_tables_and_checks_indices() {
        let mut t = Node::parse("[p]\nl = [{a = 1}]\n", src()).unwrap();
        let at = Location::whole(Arc::new(Source::Set("x".into())));
        t.set(&segs("p.new.deep"), override_value("5", at.clone()))
            .unwrap();
        assert_eq!(
            t.get(&segs("p.new.deep")).unwrap().kind,
            Kind::Scalar(Scalar::Text("5".into()))
        );
        t.set(&segs("p.l[0].a"), override_value("7", at.clone()))
            .unwrap();
        assert!(t
            .set(&segs("p.l[3].a"), override_value("7", at.clone()))
            .unwrap_err()
            .contains("out of range"));
        assert!(t
            .set(&segs("p.new.deep.x"), override_value("1", at.clone()))
            .unwrap_err()
            .contains("not a table"));
        let arr = override_value("[\"a\", \"b\"]", at);
        assert!(matches!(arr.kind, Kind::Array(ref v) if v.len() == 2));
    }

    #[test]
    fn paths_parse_both_index_styles() {
        assert_eq!(segs("a.b[2].c"), segs("a.b.2.c"));
        assert_eq!(render_path(&segs("a.b.2.c")), "a.b[2].c");
        assert!(parse_path("a..b").is_none());
        assert!(parse_path("a.b[x]").is_none());
        assert!(parse_path("a b").is_none());
        assert!(parse_path("").is_none());
    }

    #[test]
    fn remove_and_replace() {
        let mut t = Node::parse("[p]\nl = [1, 2, 3]\nk = 1\n", src()).unwrap();
        assert!(t.remove(&segs("p.l[1]")));
        assert!(t.remove(&segs("p.k")));
        assert!(!t.remove(&segs("p.k")));
        assert!(!t.remove(&segs("p.l[9]")));
        let l = t.get(&segs("p.l")).unwrap();
        assert!(matches!(&l.kind, Kind::Array(v) if v.len() == 2));
        // The survivor keeps its original path for diagnostics.
        assert_eq!(t.get(&segs("p.l[1]")).unwrap().path, "p.l[2]");
    }
}
