//! Server-side apply field ownership: `metadata.managedFields`, kept as kube-apiserver keeps it.
//!
//! Every write records which *manager* (a client, named by `fieldManager` or its User-Agent,
//! see [`manager_from_user_agent`]) set which fields. [`update`] serves create, update and the
//! non-apply patches: the writer gains the fields it changed and everyone else loses them.
//! [`apply`] serves `application/apply-patch+yaml`: it merges a partial object into the live
//! one, removes what the same manager applied last time and no longer applies, and refuses
//! to change a field another manager set unless forced ([`Conflict`], [`conflict_message`]).
//! Pure functions over `serde_json::Value`; the caller stores the result. Start with [`apply`].
//!
//! Ownership is a set of field paths ([`FieldSet`]), serialized as FieldsV1: `f:<name>` for
//! fields, `k:{..}` for items of lists merged by key, `v:<json>` for members of set lists,
//! and `"."` inside a node owned in its own right. The Kubernetes schema is reduced to what
//! ownership needs: which lists merge by key or as sets ([`list_type`]), which maps are
//! replaced whole ([`is_atomic_map`]), and which structs a Go object always carries
//! ([`skeleton`]). Every other list is atomic: owned, compared and replaced as one value.
//!
//! The behaviour follows structured-merge-diff (`merge/update.go`, `typed/tofieldset.go`,
//! `typed/compare.go`, `typed/merge.go`, `fieldpath/serialize.go`) and apimachinery's
//! `pkg/util/managedfields/internal` (identities, ordering, stripped fields, the
//! `before-first-apply` and `ancient-changes` managers, the conflict message).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::meta::parse_time;

/// Who owns the fields of an object that had none recorded when it was first applied to.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
/// Where the oldest Update managers are merged once there are more than [`MAX_UPDATE_MANAGERS`].
const ANCIENT_CHANGES: &str = "ancient-changes";
const MAX_UPDATE_MANAGERS: usize = 10;
/// kube-apiserver's limit on `fieldManager`, in bytes.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// kube-apiserver's limit on the total size of an object's annotations.
const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;
/// Metadata nobody owns: the server sets it (apimachinery's `stripmeta.go`; the deletion
/// fields are added because only the server writes them here).
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "clusterName",
    "managedFields",
];

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A field an apply would change although another manager owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name, e.g. `kubectl-edit`.
    pub manager: String,
    /// The other manager's operation: `Apply` or `Update`.
    pub operation: String,
    /// The API version the other manager wrote with (printed for `Update` managers).
    pub api_version: String,
    /// The subresource the other manager wrote through (`status`), or empty.
    pub subresource: String,
    /// The field, as `.spec.containers[name="nginx"].image`.
    pub path: String,
}

/// Server-side apply of `applied` (a partial object) by `manager` onto `current` (`None`
/// when the object does not exist yet).
///
/// Returns the object to store, `metadata.managedFields` updated, or every conflict when
/// `force` is false and the apply would change fields other managers own. With
/// `has_status_subresource`, an apply to the main resource ignores `status` and an apply to
/// `subresource == Some("status")` takes only `status`. `now` is an RFC 3339 time.
/// `applied.metadata.managedFields` is ignored (kube-apiserver rejects it with 400
/// `metadata.managedFields must be nil`; the caller may check first).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    force: bool,
    has_status_subresource: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let manager = if manager.is_empty() { "unknown" } else { manager };
    let subresource = subresource.unwrap_or("");
    let scope = Scope::new(subresource, has_status_subresource);
    let applied = if applied.is_object() { applied } else { &*EMPTY_OBJECT };
    let kind = kind_of(applied).or_else(|| current.and_then(kind_of)).unwrap_or("").to_string();

    let mut live = current.cloned().unwrap_or_else(|| json!({}));
    let raw = take_managed_fields(&mut live);
    let mut entries = decode_entries(raw.as_ref()).unwrap_or_default();
    if current.is_some() && entries.is_empty() {
        // Fields set before anyone applied belong to a stand-in manager, so an apply that
        // changes them conflicts instead of silently taking them over.
        record_update(&mut entries, &EMPTY_OBJECT, &live, BEFORE_FIRST_APPLY, api_version, subresource, scope, &kind, now);
    }

    let config = scoped_config(applied, scope);
    let new_set = owned_set(&config, &kind, scope);
    let mut merged = merge(Some(&live), &config, &kind, &mut Vec::new()).unwrap_or_else(|| live.clone());

    let mine = |e: &Entry| e.apply && e.manager == manager && e.subresource == subresource;
    let last_set = entries.iter().find(|e| mine(e)).map(|e| e.set.clone()).unwrap_or_default();
    let mut keep = new_set.clone();
    for e in entries.iter().filter(|e| !mine(e)) {
        keep = keep.union(&e.set);
    }
    prune(&mut merged, &last_set.difference(&new_set), &keep, &kind);

    let diff = compare_objects(&live, &merged, &kind, scope);
    let changed = diff.added.union(&diff.modified);
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        let owned_and_changed = e.set.intersection(&changed);
        let mut paths: Vec<&Path> = owned_and_changed.0.iter().collect();
        paths.sort_by(|a, b| iteration_order(a, b));
        conflicts.extend(paths.into_iter().map(|p| Conflict {
            manager: e.manager.clone(),
            operation: e.operation().to_string(),
            api_version: e.api_version.clone(),
            subresource: e.subresource.clone(),
            path: path_string(p),
        }));
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort_by_key(conflict_identity);
        return Err(conflicts);
    }
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.set = e.set.difference(&changed).difference(&diff.removed);
    }
    let object_changed = !diff.is_empty() || live != merged;
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.set = new_set;
            e.api_version = api_version.to_string();
            if object_changed || e.time.is_none() {
                e.time = Some(now.to_string());
            }
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            apply: true,
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: subresource.to_string(),
            set: new_set,
        }),
    }
    entries.retain(|e| !e.set.is_empty());
    if manager == "kubectl" {
        refresh_last_applied(&live, &mut merged, applied);
    }
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Records an update (create, update, or a JSON/merge/strategic patch) by `manager` from
/// `old` (`None` for a create) to `new`, returning `new` with `metadata.managedFields` set.
///
/// The manager gains every field it added or changed; other managers lose those and every
/// field removed. Managed fields sent in `new` replace the stored ones when they are a valid
/// non-empty list (as kube-apiserver does; `[]` or `[{}]` clears them); anything invalid is
/// ignored. Like kube-apiserver, an existing object without managed fields stays untracked
/// until its first apply.
pub fn update(
    old: Option<&Value>,
    mut new: Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    has_status_subresource: bool,
    now: &str,
) -> Value {
    if !new.is_object() {
        return new;
    }
    let manager = if manager.is_empty() { "unknown" } else { manager };
    let subresource = subresource.unwrap_or("");
    let scope = Scope::new(subresource, has_status_subresource);
    let kind = kind_of(&new).or_else(|| old.and_then(kind_of)).unwrap_or("").to_string();

    let mut old_obj = old.cloned().unwrap_or_else(|| json!({}));
    let stored = decode_entries(take_managed_fields(&mut old_obj).as_ref()).unwrap_or_default();
    let sent = take_managed_fields(&mut new);
    let mut entries = match &sent {
        _ if !subresource.is_empty() => stored,
        Some(v) if is_reset(v) => Vec::new(),
        Some(v) => match decode_entries(Some(v)) {
            Some(e) if !e.is_empty() => e,
            _ => stored,
        },
        None => stored,
    };
    if old.is_some() && entries.is_empty() {
        return new;
    }
    record_update(&mut entries, &old_obj, &new, manager, api_version, subresource, scope, &kind, now);
    write_entries(&mut new, entries);
    new
}

/// The message of the 409 `Conflict` Status for a failed apply, worded as kube-apiserver
/// words it. `api_version` stands in for a manager's version when its entry has none.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", print_manager(c, api_version), c.path);
    }
    let mut groups: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for c in conflicts {
        groups.entry(conflict_identity(c)).or_insert_with(|| (print_manager(c, api_version), Vec::new())).1.push(&c.path);
    }
    let mut lines = Vec::new();
    for (printed, paths) in groups.into_values() {
        lines.push(format!("conflicts with {printed}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// The `details` of the 409 Status: one `FieldManagerConflict` cause per conflict.
pub fn conflict_details(conflicts: &[Conflict], api_version: &str) -> Value {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", print_manager(c, api_version)), "field": c.path})
        })
        .collect();
    json!({ "causes": causes })
}

/// The manager kube-apiserver assumes when a request names none: the User-Agent up to its
/// first `/`, without unprintable characters, cut to 128 bytes (`kubectl/v1.33.1 (linux/amd64)
/// kubernetes/abc` → `kubectl`). An empty result stands for `unknown`.
pub fn manager_from_user_agent(ua: &str) -> String {
    let prefix = ua.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in prefix.chars().filter(|c| is_printable(*c)) {
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Managers: entries of metadata.managedFields
// ---------------------------------------------------------------------------------------------

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    apply: bool,
    api_version: String,
    time: Option<String>,
    subresource: String,
    set: FieldSet,
}

impl Entry {
    fn operation(&self) -> &'static str {
        if self.apply { "Apply" } else { "Update" }
    }

    /// Entries are one per (manager, operation, subresource), and per API version for
    /// updates: apimachinery's `BuildManagerIdentifier`, in its JSON form (which also orders
    /// managers in conflict messages).
    fn identity(&self) -> String {
        identity(&self.manager, self.apply, &self.api_version, &self.subresource)
    }

    fn secs(&self) -> i64 {
        self.time.as_deref().and_then(parse_time).unwrap_or(0)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), json!(self.manager));
        }
        m.insert("operation".into(), json!(self.operation()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_json());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

fn identity(manager: &str, apply: bool, api_version: &str, subresource: &str) -> String {
    let mut s = String::from("{");
    if !manager.is_empty() {
        s.push_str(&format!("\"manager\":{},", go_json(&json!(manager))));
    }
    s.push_str(if apply { "\"operation\":\"Apply\"" } else { "\"operation\":\"Update\"" });
    if !apply && !api_version.is_empty() {
        s.push_str(&format!(",\"apiVersion\":{}", go_json(&json!(api_version))));
    }
    if !subresource.is_empty() {
        s.push_str(&format!(",\"subresource\":{}", go_json(&json!(subresource))));
    }
    s.push('}');
    s
}

fn conflict_identity(c: &Conflict) -> String {
    identity(&c.manager, c.operation == "Apply", &c.api_version, &c.subresource)
}

/// `"kubectl"`, `"kube-controller-manager" using apps/v1`, `"kubelet" with subresource
/// "status" using v1` (apimachinery's `printManager`; identities carry no time).
fn print_manager(c: &Conflict, fallback_version: &str) -> String {
    let mut s = go_json(&json!(c.manager));
    if !c.subresource.is_empty() {
        s.push_str(&format!(" with subresource {}", go_json(&json!(c.subresource))));
    }
    if c.operation != "Apply" {
        let v = if c.api_version.is_empty() { fallback_version } else { &c.api_version };
        s.push_str(&format!(" using {v}"));
    }
    s
}

/// Parses `metadata.managedFields`: `Some(empty)` when absent, `None` when any entry is
/// invalid (kube-apiserver then ignores the whole list).
fn decode_entries(raw: Option<&Value>) -> Option<Vec<Entry>> {
    let items = match raw {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return None,
    };
    let mut out: Vec<Entry> = Vec::new();
    for item in items {
        let m = item.as_object()?;
        let text = |k: &str| match m.get(k) {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        let apply = match m.get("operation").and_then(Value::as_str) {
            Some("Apply") => true,
            Some("Update") => false,
            _ => return None,
        };
        let api_version = text("apiVersion").filter(|v| !v.is_empty())?;
        if m.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1") {
            return None;
        }
        let set = match m.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(f) => FieldSet::from_json(f)?,
        };
        let time = m.get("time").and_then(Value::as_str).filter(|t| parse_time(t).is_some()).map(str::to_string);
        let e = Entry { manager: text("manager")?, apply, api_version, time, subresource: text("subresource")?, set };
        let id = e.identity();
        match out.iter_mut().find(|o| o.identity() == id) {
            Some(o) => *o = e,
            None => out.push(e),
        }
    }
    Some(out)
}

/// `[]` or `[{}]`: the client asks to clear managed fields.
fn is_reset(v: &Value) -> bool {
    match v.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

/// Stores `entries` in `obj`, in kube-apiserver's order (Apply before Update, then oldest
/// first, then by manager), or removes `managedFields` when there are none.
fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.sort_by(|p, q| {
        p.operation()
            .cmp(q.operation())
            .then(p.secs().cmp(&q.secs()))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    let Some(root) = obj.as_object_mut() else { return };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Value::Object(meta) = meta {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(Entry::to_json).collect()));
    }
}

/// Removes and returns `metadata.managedFields`.
fn take_managed_fields(obj: &mut Value) -> Option<Value> {
    obj.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"))
}

fn kind_of(v: &Value) -> Option<&str> {
    v.get("kind").and_then(Value::as_str)
}

/// The fields `manager` changed from `old` to `new` (both without managed fields) become
/// its own; every other manager loses them and every removed field.
#[allow(clippy::too_many_arguments)]
fn record_update(
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    scope: Scope,
    kind: &str,
    now: &str,
) {
    let diff = compare_objects(old, new, kind, scope);
    let changed = diff.added.union(&diff.modified);
    for e in entries.iter_mut() {
        e.set = e.set.difference(&changed).difference(&diff.removed);
    }
    let mut mine = changed;
    mine.0.retain(|p| !is_stripped(p));
    if !mine.is_empty() {
        let id = identity(manager, false, api_version, subresource);
        match entries.iter_mut().find(|e| e.identity() == id) {
            Some(e) => {
                e.set = e.set.union(&mine);
                e.time = Some(now.to_string());
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                apply: false,
                api_version: api_version.to_string(),
                time: Some(now.to_string()),
                subresource: subresource.to_string(),
                set: mine,
            }),
        }
    }
    entries.retain(|e| !e.set.is_empty());
    cap_update_managers(entries);
}

/// Keeps at most [`MAX_UPDATE_MANAGERS`] Update entries by merging the oldest of each API
/// version into `ancient-changes`, as apimachinery's `capmanagers.go` does.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<(i64, String)> = entries.iter().filter(|e| !e.apply).map(|e| (e.secs(), e.identity())).collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort();
    let mut count = updaters.len();
    let mut first_of_version: HashMap<String, String> = HashMap::new();
    for (_, id) in updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(pos) = entries.iter().position(|e| e.identity() == id) else { continue };
        let version = entries[pos].api_version.clone();
        let Some(first) = first_of_version.get(&version) else {
            first_of_version.insert(version, id);
            continue;
        };
        let bucket = identity(ANCIENT_CHANGES, false, &version, "");
        if !entries.iter().any(|e| e.identity() == bucket)
            && let Some(f) = entries.iter_mut().find(|e| e.identity() == *first)
        {
            f.manager = ANCIENT_CHANGES.to_string();
            f.subresource.clear();
        }
        if entries[pos].identity() == bucket {
            continue;
        }
        let taken = entries.remove(pos);
        if let Some(b) = entries.iter_mut().find(|e| e.identity() == bucket) {
            b.set = b.set.union(&taken.set);
            b.time = taken.time;
        }
        count -= 1;
    }
}

/// Since kube-apiserver keeps kubectl's client-side apply annotation current when kubectl
/// applies server-side to an object that has it, switching back to client-side apply works.
fn refresh_last_applied(live: &Value, merged: &mut Value, applied: &Value) {
    let had =
        live.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !had {
        return;
    }
    let mut config = applied.clone();
    take_managed_fields(&mut config);
    if let Some(Value::Object(a)) = config.pointer_mut("/metadata/annotations") {
        a.remove(LAST_APPLIED);
    }
    let text = go_json(&config) + "\n";
    let Some(Value::Object(annotations)) = merged.pointer_mut("/metadata/annotations") else { return };
    annotations.insert(LAST_APPLIED.into(), Value::String(text));
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if size > MAX_ANNOTATIONS_SIZE {
        annotations.remove(LAST_APPLIED);
    }
}

// ---------------------------------------------------------------------------------------------
// What a write may own
// ---------------------------------------------------------------------------------------------

/// Which top-level part of an object a write tracks: kube-apiserver's reset fields reduced to
/// the status split.
#[derive(Debug, Clone, Copy)]
struct Scope {
    status_only: bool,
    without_status: bool,
}

impl Scope {
    fn new(subresource: &str, has_status_subresource: bool) -> Self {
        let status_only = subresource == "status";
        Scope { status_only, without_status: !status_only && has_status_subresource }
    }

    fn tracks(self, p: &[Pe]) -> bool {
        let status = matches!(p.first(), Some(Pe::Field(f)) if f == "status");
        if self.status_only { status } else { !(self.without_status && status) }
    }
}

fn is_stripped(p: &[Pe]) -> bool {
    match p {
        [Pe::Field(f)] => matches!(f.as_str(), "apiVersion" | "kind" | "metadata"),
        [Pe::Field(m), Pe::Field(f)] => m == "metadata" && STRIPPED_METADATA.contains(&f.as_str()),
        _ => false,
    }
}

/// The part of an applied configuration the write may set.
fn scoped_config(applied: &Value, scope: Scope) -> Value {
    let mut config = applied.clone();
    take_managed_fields(&mut config);
    if let Value::Object(m) = &mut config {
        if scope.status_only {
            m.retain(|k, _| k == "status");
        } else if scope.without_status {
            m.remove("status");
        }
    }
    config
}

/// The fields an applied configuration claims.
fn owned_set(config: &Value, kind: &str, scope: Scope) -> FieldSet {
    let mut set = FieldSet::default();
    collect(config, kind, &mut Vec::new(), &mut Vec::new(), &mut set);
    set.0.retain(|p| scope.tracks(p) && !is_stripped(p));
    set
}

fn compare_objects(old: &Value, new: &Value, kind: &str, scope: Scope) -> Diff {
    let mut d = Diff::default();
    compare(Some(old), Some(new), kind, &mut Vec::new(), &mut Vec::new(), &mut d);
    for s in [&mut d.added, &mut d.modified, &mut d.removed] {
        s.0.retain(|p| scope.tracks(p));
    }
    d
}

// ---------------------------------------------------------------------------------------------
// Field paths and sets
// ---------------------------------------------------------------------------------------------

/// One step of a field path, ordered as structured-merge-diff orders them (fields, then
/// keys, then values, then indexes), which is also the order of FieldsV1 keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pe {
    /// `f:name`: a field of a map.
    Field(String),
    /// `k:{"name":"nginx"}`: the item of a keyed list with these key fields, sorted by name.
    Key(Vec<(String, Scalar)>),
    /// `v:"foo"`: the member of a set list.
    Value(Scalar),
    /// `i:0`: never produced here (atomic lists are owned whole), but read back.
    Index(i64),
}

type Path = Vec<Pe>;

impl Pe {
    /// The FieldsV1 key.
    fn to_key(&self) -> String {
        match self {
            Pe::Field(f) => format!("f:{f}"),
            Pe::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(n, v)| format!("{}:{}", go_json(&json!(n)), go_json(&v.0))).collect();
                format!("k:{{{}}}", parts.join(","))
            }
            Pe::Value(v) => format!("v:{}", go_json(&v.0)),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key: `Ok(None)` for a kind of element this version does not know
    /// (skipped, as structured-merge-diff does), `Err` for a malformed one.
    fn from_key(k: &str) -> Result<Option<Pe>, ()> {
        let b = k.as_bytes();
        if b.len() < 2 || b[1] != b':' {
            return Err(());
        }
        // The first two bytes are ASCII, so slicing at 2 is on a character boundary.
        let rest = &k[2..];
        Ok(Some(match b[0] {
            b'f' => Pe::Field(rest.to_string()),
            b'v' => Pe::Value(Scalar::new(&serde_json::from_str::<Value>(rest).map_err(|_| ())?)),
            b'k' => {
                let Value::Object(m) = serde_json::from_str::<Value>(rest).map_err(|_| ())? else { return Err(()) };
                Pe::Key(m.iter().map(|(n, v)| (n.clone(), Scalar::new(v))).collect())
            }
            b'i' => Pe::Index(rest.parse().map_err(|_| ())?),
            _ => return Ok(None),
        }))
    }
}

/// `.spec.containers[name="nginx"].image`, as structured-merge-diff prints paths.
fn path_string(p: &[Pe]) -> String {
    let mut s = String::new();
    for pe in p {
        match pe {
            Pe::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Pe::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={}", go_display(&v.0))).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Pe::Value(v) => s.push_str(&format!("[={}]", go_display(&v.0))),
            Pe::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The order structured-merge-diff lists paths in (a node's own members before its
/// children's), used for conflicts.
fn iteration_order(a: &[Pe], b: &[Pe]) -> Ordering {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.len() == common + 1, b.len() == common + 1) {
        _ if a.len() == common || b.len() == common => a.len().cmp(&b.len()),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a[common].cmp(&b[common]),
    }
}

/// A JSON value inside a path element, ordered as structured-merge-diff orders values
/// (numbers, then strings, booleans, lists, maps, null).
#[derive(Debug, Clone)]
struct Scalar(Value);

impl Scalar {
    /// Integral floats become integers so `80.0` and `80` name the same item, as they do
    /// once Kubernetes decodes them.
    fn new(v: &Value) -> Self {
        if let Value::Number(n) = v
            && n.as_i64().is_none()
            && n.as_u64().is_none()
            && let Some(f) = n.as_f64()
            && f.fract() == 0.0
            && f.abs() < 9.0e15
        {
            return Scalar(json!(f as i64));
        }
        Scalar(v.clone())
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scalar {}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scalar {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_values(&self.0, &other.0)
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            x.iter().zip(y).map(|(p, q)| cmp_values(p, q)).find(|o| o.is_ne()).unwrap_or_else(|| x.len().cmp(&y.len()))
        }
        (Value::Object(_), Value::Object(_)) => a.to_string().cmp(&b.to_string()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A set of field paths: what one manager owns, or what changed between two objects.
/// A path in the set owns that node; paths below it are separate members.
#[derive(Debug, Clone, Default, PartialEq)]
struct FieldSet(BTreeSet<Path>);

impl FieldSet {
    fn insert(&mut self, p: &[Pe]) {
        if !p.is_empty() {
            self.0.insert(p.to_vec());
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, p: &[Pe]) -> bool {
        self.0.contains(p)
    }

    /// Whether some path strictly below `p` is in the set. Paths below `p` sort right
    /// after it, so the next path decides.
    fn has_under(&self, p: &[Pe]) -> bool {
        self.0.range::<[Pe], _>((Bound::Excluded(p), Bound::Unbounded)).next().is_some_and(|q| q.starts_with(p))
    }

    fn union(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&o.0).cloned().collect())
    }

    fn difference(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&o.0).cloned().collect())
    }

    fn intersection(&self, o: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&o.0).cloned().collect())
    }

    /// FieldsV1: a trie keyed by path elements, `{}` at leaves, `".": {}` in a node that
    /// is both a member and has members below it.
    fn to_json(&self) -> Value {
        #[derive(Default)]
        struct Trie {
            member: bool,
            children: BTreeMap<Pe, Trie>,
        }
        fn render(t: &Trie) -> Value {
            let mut m = Map::new();
            if t.member && !t.children.is_empty() {
                m.insert(".".into(), json!({}));
            }
            for (pe, child) in &t.children {
                m.insert(pe.to_key(), render(child));
            }
            Value::Object(m)
        }
        let mut root = Trie::default();
        for p in &self.0 {
            let mut node = &mut root;
            for pe in p {
                node = node.children.entry(pe.clone()).or_default();
            }
            node.member = true;
        }
        render(&root)
    }

    /// Reads FieldsV1; `None` if it is malformed.
    fn from_json(v: &Value) -> Option<FieldSet> {
        /// Reads the children of the node at `prefix`; returns whether anything was added.
        fn read(m: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) -> Option<bool> {
            let mut added = false;
            for (k, child) in m {
                if k == "." {
                    continue;
                }
                let Some(pe) = Pe::from_key(k).ok()? else { continue };
                let Value::Object(cm) = child else { return None };
                prefix.push(pe);
                let below = read(cm, prefix, out)?;
                if cm.contains_key(".") || !below {
                    out.insert(prefix);
                }
                prefix.pop();
                added = true;
            }
            Some(added)
        }
        let Value::Object(m) = v else { return None };
        let mut out = FieldSet::default();
        read(m, &mut Vec::new(), &mut out)?;
        Some(out)
    }
}

// ---------------------------------------------------------------------------------------------
// The schema, as far as ownership needs it
// ---------------------------------------------------------------------------------------------

/// How a list merges and is owned (`x-kubernetes-list-type`, or the patch strategy where
/// the type has no marker).
#[derive(Debug, Clone, Copy)]
enum ListType {
    /// Owned and replaced as one value.
    Atomic,
    /// Items are scalars owned one by one (`v:`).
    Set,
    /// Items are maps identified by `keys` (`k:`); `whole` when the item type is an atomic
    /// struct (owned as one value, no fields below).
    Map { keys: &'static [&'static str], whole: bool },
}

/// The list at `names` (the field names from the object root, list items skipped) of an
/// object of `kind`. From the `+listType`/`+listMapKey`/`+patchMergeKey` markers of
/// k8s.io/api core/v1, apps/v1, batch/v1 and meta/v1 for the kinds served here.
fn list_type(kind: &str, names: &[&str]) -> ListType {
    let Some((field, parents)) = names.split_last() else { return ListType::Atomic };
    let parent = parents.last().copied().unwrap_or("");
    let in_container = matches!(parent, "containers" | "initContainers" | "ephemeralContainers");
    let by = |keys| ListType::Map { keys, whole: false };
    match *field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "schedulingGates" | "resourceClaims" if parent == "spec" => {
            by(&["name"])
        }
        "imagePullSecrets" if parent == "spec" => ListType::Map { keys: &["name"], whole: true },
        "hostAliases" if parent == "spec" => by(&["ip"]),
        "topologySpreadConstraints" if parent == "spec" => by(&["topologyKey", "whenUnsatisfiable"]),
        "env" if in_container => by(&["name"]),
        "volumeMounts" if in_container => by(&["mountPath"]),
        "volumeDevices" if in_container => by(&["devicePath"]),
        "ports" if in_container => by(&["containerPort", "protocol"]),
        "ports" if kind == "Service" && parents == ["spec"] => by(&["port", "protocol"]),
        "claims" if parent == "resources" => by(&["name"]),
        // Job conditions are `+listType=atomic` although they carry a patch merge key.
        "conditions" if parent == "status" && kind != "Job" => by(&["type"]),
        "podIPs" if parent == "status" => by(&["ip"]),
        "resourceClaimStatuses" if parent == "status" => by(&["name"]),
        "addresses" if kind == "Node" && parents == ["status"] => by(&["type"]),
        "podCIDRs" if kind == "Node" && parents == ["spec"] => ListType::Set,
        "ownerReferences" if parents == ["metadata"] => ListType::Map { keys: &["uid"], whole: true },
        "finalizers" if parents == ["metadata"] => ListType::Set,
        "secrets" if kind == "ServiceAccount" && parents.is_empty() => ListType::Map { keys: &["name"], whole: true },
        "succeeded" | "failed" if parent == "uncountedTerminatedPods" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// The default of a key field an item may omit (`+default` in the schema): a port's
/// protocol is TCP, so `k:{"containerPort":80,"protocol":"TCP"}` names an item without one.
fn key_default(names: &[&str], key: &str) -> Option<Value> {
    (names.last() == Some(&"ports") && key == "protocol").then(|| json!("TCP"))
}

/// Whether the map at `names` is owned and replaced whole: label selectors, `nodeSelector`
/// and a Service's `selector` (`+mapType=atomic`), and the `+structType=atomic` references.
fn is_atomic_map(kind: &str, names: &[&str]) -> bool {
    let Some((field, parents)) = names.split_last() else { return false };
    match *field {
        "selector" | "labelSelector" | "namespaceSelector" | "nodeSelector" => true,
        "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef" | "fileKeyRef" | "secretRef" => true,
        "requiredDuringSchedulingIgnoredDuringExecution" => parents.last() == Some(&"nodeAffinity"),
        "involvedObject" | "related" => kind == "Event" && parents.is_empty(),
        _ => false,
    }
}

static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Map::new()));
static NULL: Value = Value::Null;

/// What an empty Go object of a served kind has at `names` although nobody set it: structs
/// that are not pointers (and `containers`, which is never omitted). Kubernetes compares an
/// update against the typed object, so these are never "added" and get no `"."`.
fn skeleton(names: &[&str]) -> Option<&'static Value> {
    let empty = Some(&*EMPTY_OBJECT);
    match names {
        ["metadata" | "spec" | "status" | "involvedObject" | "source"] => empty,
        ["spec", "template" | "strategy" | "updateStrategy" | "jobTemplate"] => empty,
        [.., "template" | "jobTemplate", "metadata" | "spec"] | [.., "jobTemplate", "spec", "template"] => empty,
        ["spec", "containers"] | [.., "template", "spec", "containers"] => Some(&NULL),
        [.., "containers" | "initContainers" | "ephemeralContainers", "resources"] => empty,
        ["status", "loadBalancer" | "daemonEndpoints" | "nodeInfo"] | ["status", "daemonEndpoints", "kubeletEndpoint"] => empty,
        _ => None,
    }
}

/// The path elements of a list's items, or `Atomic` when the list is atomic or an item
/// cannot be identified (a keyed item without any key, a set member that is not a scalar):
/// structured-merge-diff rejects those; here the list is then handled whole.
enum Items {
    Atomic,
    Keyed { pes: Vec<Pe>, whole: bool },
}

fn list_items(kind: &str, names: &[&str], items: &[Value]) -> Items {
    match list_type(kind, names) {
        ListType::Atomic => Items::Atomic,
        ListType::Set if items.iter().any(|v| v.is_object() || v.is_array()) => Items::Atomic,
        ListType::Set => Items::Keyed { pes: items.iter().map(|v| Pe::Value(Scalar::new(v))).collect(), whole: true },
        ListType::Map { keys, whole } => match items.iter().map(|v| item_key(names, keys, v)).collect::<Option<Vec<Pe>>>() {
            Some(pes) => Items::Keyed { pes, whole },
            None => Items::Atomic,
        },
    }
}

fn item_key(names: &[&str], keys: &[&str], item: &Value) -> Option<Pe> {
    let m = item.as_object()?;
    let mut fields: Vec<(String, Scalar)> = Vec::new();
    for k in keys {
        match m.get(*k).filter(|v| !v.is_null()) {
            Some(v) => fields.push((k.to_string(), Scalar::new(v))),
            None => {
                if let Some(d) = key_default(names, k) {
                    fields.push((k.to_string(), Scalar(d)));
                }
            }
        }
    }
    if fields.is_empty() {
        return None;
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Pe::Key(fields))
}

/// The first item of each path element, in list order.
fn index_items(pes: Vec<Pe>, items: &[Value]) -> (Vec<Pe>, BTreeMap<Pe, &Value>) {
    let mut order = Vec::new();
    let mut map = BTreeMap::new();
    for (pe, item) in pes.into_iter().zip(items) {
        if !map.contains_key(&pe) {
            map.insert(pe.clone(), item);
            order.push(pe);
        }
    }
    (order, map)
}

// ---------------------------------------------------------------------------------------------
// Walks: the fields of a configuration, the difference of two objects, merge, prune
// ---------------------------------------------------------------------------------------------

/// Adds the fields `v` sets (structured-merge-diff's `ToFieldSet`): scalars, atomic values,
/// empty maps and nulls are leaves; items of keyed lists are members with their fields
/// below; map fields are members only through their contents. An empty keyed or set list
/// sets nothing.
fn collect<'a>(v: &'a Value, kind: &str, names: &mut Vec<&'a str>, path: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if m.is_empty() || is_atomic_map(kind, names) => out.insert(path),
        Value::Object(m) => {
            for (k, child) in m {
                names.push(k);
                path.push(Pe::Field(k.clone()));
                collect(child, kind, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => match list_items(kind, names, items) {
            Items::Atomic => out.insert(path),
            Items::Keyed { pes, whole } => {
                let (order, map) = index_items(pes, items);
                for pe in order {
                    let Some(item) = map.get(&pe).copied() else { continue };
                    path.push(pe);
                    if !whole {
                        collect(item, kind, names, path, out);
                    }
                    out.insert(path);
                    path.pop();
                }
            }
        },
        _ => out.insert(path),
    }
}

/// What changed from one object to another (structured-merge-diff's `Compare`).
#[derive(Debug, Default)]
struct Diff {
    /// Nodes that appeared, with everything below them.
    added: FieldSet,
    /// Leaves (scalars, atomic values) whose value changed.
    modified: FieldSet,
    /// Nodes that disappeared, with everything below them.
    removed: FieldSet,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// `None` is absent; `Some(null)` is present but empty.
fn compare<'a>(l: Option<&'a Value>, r: Option<&'a Value>, kind: &str, names: &mut Vec<&'a str>, path: &mut Path, d: &mut Diff) {
    let (lv, rv) = (l.filter(|v| !v.is_null()), r.filter(|v| !v.is_null()));
    let empty = |v: Option<&Value>| match v {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    let both_empty = empty(lv) && empty(rv);
    let maps = (lv.is_some() || rv.is_some()) && lv.is_none_or(Value::is_object) && rv.is_none_or(Value::is_object);
    let lists = (lv.is_some() || rv.is_some()) && lv.is_none_or(Value::is_array) && rv.is_none_or(Value::is_array);
    let walked = if maps && !both_empty && !is_atomic_map(kind, names) {
        compare_maps(l.is_some(), lv, rv, kind, names, path, d);
        true
    } else if lists && !both_empty {
        compare_lists(lv, rv, kind, names, path, d)
    } else {
        false
    };
    if !walked {
        compare_leaf(l, r, path, d);
    } else if !path.is_empty() {
        if l.is_none() {
            d.added.insert(path);
        } else if r.is_none() {
            d.removed.insert(path);
        }
    }
}

fn compare_leaf(l: Option<&Value>, r: Option<&Value>, path: &Path, d: &mut Diff) {
    match (l, r) {
        (None, Some(_)) => d.added.insert(path),
        (Some(_), None) => d.removed.insert(path),
        (Some(a), Some(b)) if a != b => d.modified.insert(path),
        _ => {}
    }
}

fn compare_maps<'a>(
    l_present: bool,
    lv: Option<&'a Value>,
    rv: Option<&'a Value>,
    kind: &str,
    names: &mut Vec<&'a str>,
    path: &mut Path,
    d: &mut Diff,
) {
    let lm = lv.and_then(Value::as_object);
    let rm = rv.and_then(Value::as_object);
    let keys: BTreeSet<&'a str> = lm.into_iter().chain(rm).flat_map(|m| m.keys().map(String::as_str)).collect();
    for k in keys {
        names.push(k);
        let rc = rm.and_then(|m| m.get(k));
        let mut lc = lm.and_then(|m| m.get(k));
        if lc.is_none() && rc.is_some() && l_present {
            lc = skeleton(names);
        }
        path.push(Pe::Field(k.to_string()));
        compare(lc, rc, kind, names, path, d);
        path.pop();
        names.pop();
    }
}

/// Returns false when the list is compared as one value.
fn compare_lists<'a>(
    lv: Option<&'a Value>,
    rv: Option<&'a Value>,
    kind: &str,
    names: &mut Vec<&'a str>,
    path: &mut Path,
    d: &mut Diff,
) -> bool {
    let li: &'a [Value] = lv.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let ri: &'a [Value] = rv.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let (Items::Keyed { pes: lp, whole }, Items::Keyed { pes: rp, .. }) = (list_items(kind, names, li), list_items(kind, names, ri)) else {
        return false;
    };
    let (lorder, lmap) = index_items(lp, li);
    let (rorder, rmap) = index_items(rp, ri);
    let added: Vec<Pe> = rorder.into_iter().filter(|pe| !lmap.contains_key(pe)).collect();
    for pe in lorder.into_iter().chain(added) {
        let (lc, rc) = (lmap.get(&pe).copied(), rmap.get(&pe).copied());
        path.push(pe);
        if whole {
            compare_leaf(lc, rc, path, d);
        } else {
            compare(lc, rc, kind, names, path, d);
        }
        path.pop();
    }
    true
}

/// Merges an applied configuration into the live object (structured-merge-diff's `Merge`):
/// maps merge field by field, keyed lists item by item, set lists as a union; anything
/// else takes the applied value. `None` means the field goes: the configuration set it to
/// null.
fn merge<'a>(l: Option<&'a Value>, r: &'a Value, kind: &str, names: &mut Vec<&'a str>) -> Option<Value> {
    match r {
        Value::Null => None,
        Value::Object(rm) if !is_atomic_map(kind, names) => {
            let lm = l.and_then(Value::as_object);
            let mut out = lm.cloned().unwrap_or_default();
            for (k, rc) in rm {
                names.push(k);
                let merged = merge(lm.and_then(|m| m.get(k)), rc, kind, names);
                names.pop();
                match merged {
                    Some(v) => {
                        out.insert(k.clone(), v);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(ri) => Some(match l.and_then(Value::as_array) {
            Some(li) if !li.is_empty() => merge_lists(li, ri, kind, names).unwrap_or_else(|| r.clone()),
            _ => r.clone(),
        }),
        _ => Some(r.clone()),
    }
}

/// Merges two keyed or set lists; `None` when the list is atomic. The order is
/// structured-merge-diff's: live items keep their places, applied items come in applied
/// order, and an applied item the live list lacks goes before the next one both have.
fn merge_lists<'a>(li: &'a [Value], ri: &'a [Value], kind: &str, names: &mut Vec<&'a str>) -> Option<Value> {
    let (Items::Keyed { pes: lp, whole }, Items::Keyed { pes: rp, .. }) = (list_items(kind, names, li), list_items(kind, names, ri)) else {
        return None;
    };
    let (lorder, lmap) = index_items(lp, li);
    let (rorder, rmap) = index_items(rp, ri);
    let shared: Vec<&Pe> = rorder.iter().filter(|pe| lmap.contains_key(*pe)).collect();
    let mut shared = shared.into_iter();
    let mut next_shared = shared.next();
    let mut emitted: BTreeSet<&Pe> = BTreeSet::new();
    let mut out = Vec::with_capacity(lorder.len() + rorder.len());
    let item = |pe: &Pe, names: &mut Vec<&'a str>| -> Option<Value> {
        let rv = rmap.get(pe).copied()?;
        Some(if whole { rv.clone() } else { merge(lmap.get(pe).copied(), rv, kind, names).unwrap_or(Value::Null) })
    };
    let (mut a, mut b) = (0, 0);
    // Every round consumes a live or an applied item; the bound only guards that claim.
    for _ in 0..=(2 * (lorder.len() + rorder.len())) {
        if a >= lorder.len() && b >= rorder.len() {
            break;
        }
        if let (Some(lpe), Some(rpe)) = (lorder.get(a), rorder.get(b)) {
            if lpe == rpe {
                out.extend(item(rpe, names));
                emitted.insert(rpe);
                a += 1;
                b += 1;
                next_shared = shared.next();
                continue;
            }
            if rmap.contains_key(lpe) && next_shared.is_some_and(|s| s != lpe) {
                a += 1;
                continue;
            }
        }
        if let Some(lpe) = lorder.get(a) {
            if !rmap.contains_key(lpe) {
                out.extend(lmap.get(lpe).map(|v| (*v).clone()));
                a += 1;
                continue;
            }
            if emitted.contains(lpe) {
                a += 1;
            }
        }
        if let Some(rpe) = rorder.get(b) {
            out.extend(item(rpe, names));
            emitted.insert(rpe);
            b += 1;
            if next_shared == Some(rpe) {
                next_shared = shared.next();
            }
        }
    }
    Some(Value::Array(out))
}

/// Removes from `obj` what the applier applied last time and no longer applies, unless
/// someone (the applier's new configuration included) still owns it or something below it.
/// Maps and lists left empty by a removal go too, unless owned, except top-level fields.
fn prune(obj: &mut Value, candidates: &FieldSet, keep: &FieldSet, kind: &str) {
    for p in &candidates.0 {
        if !keep.contains(p) && !keep.has_under(p) {
            remove_path(obj, p, 0, keep, kind, &mut Vec::new());
        }
    }
}

/// Removes the node at `full` from `v`, which sits at `full[..depth]`; returns whether `v`
/// is left an empty container.
fn remove_path<'p>(v: &mut Value, full: &'p [Pe], depth: usize, keep: &FieldSet, kind: &str, names: &mut Vec<&'p str>) -> bool {
    let Some(pe) = full.get(depth) else { return false };
    let last = depth + 1 == full.len();
    match (v, pe) {
        (Value::Object(m), Pe::Field(f)) => {
            if last {
                m.remove(f);
            } else if let Some(child) = m.get_mut(f) {
                names.push(f);
                let emptied = remove_path(child, full, depth + 1, keep, kind, names);
                names.pop();
                if emptied && depth >= 1 && !keep.contains(&full[..=depth]) {
                    m.remove(f);
                }
            }
            m.is_empty()
        }
        (Value::Array(items), pe) => {
            let index = match pe {
                Pe::Index(i) => usize::try_from(*i).ok().filter(|i| *i < items.len()),
                _ => match list_items(kind, names, items) {
                    Items::Keyed { pes, .. } => pes.iter().position(|q| q == pe),
                    Items::Atomic => None,
                },
            };
            if let Some(i) = index {
                if last {
                    items.remove(i);
                } else if let Some(item) = items.get_mut(i) {
                    remove_path(item, full, depth + 1, keep, kind, names);
                }
            }
            items.is_empty()
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Go's spelling of JSON and values
// ---------------------------------------------------------------------------------------------

/// Compact JSON as Go's encoder writes it: HTML characters and line separators escaped.
/// They can only occur inside strings, so replacing them everywhere is safe.
fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A key value in a printed path: strings quoted, numbers and booleans bare.
fn go_display(v: &Value) -> String {
    match v {
        Value::String(_) => serde_json::to_string(v).unwrap_or_default(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_display).collect::<Vec<_>>().join(",")),
        Value::Object(m) => m.iter().map(|(k, v)| format!("{k}={}", go_display(v))).collect(),
        other => other.to_string(),
    }
}

/// Go's `unicode.IsPrint`, closely enough: no control, format or private-use characters,
/// and no spaces but the ASCII one.
fn is_printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{e000}'..='\u{f8ff}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";
    const T2: &str = "2026-01-01T00:02:00Z";

    fn deployment(replicas: i64, image: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    fn apply_ok(current: Option<&Value>, applied: &Value, manager: &str, force: bool, now: &str) -> Value {
        match apply(current, applied, manager, "apps/v1", None, force, true, now) {
            Ok(v) => v,
            Err(c) => panic!("unexpected conflicts: {c:?}"),
        }
    }

    fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn fields<'a>(obj: &'a Value, manager: &str, operation: &str) -> &'a Value {
        entry(obj, manager, operation).map_or(&Value::Null, |e| &e["fieldsV1"])
    }

    #[test]
    fn kubectl_apply_of_a_deployment_records_the_fields_kube_records() {
        let obj = apply_ok(None, &deployment(3, "nginx:1.14.2", json!({"app": "nginx"})), "kubectl", false, T0);
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        });
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0, "fieldsType": "FieldsV1", "fieldsV1": expected}])
        );
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}]));
    }

    #[test]
    fn reapplying_without_a_label_removes_it_unless_someone_else_owns_it() {
        let first = apply_ok(None, &deployment(3, "nginx", json!({"app": "nginx", "tier": "web", "team": "a"})), "kubectl", false, T0);
        // Another applier claims `team` with the same value: shared ownership, no conflict.
        let shared = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "labels": {"team": "a"}}});
        let second = apply_ok(Some(&first), &shared, "labeller", false, T1);
        let third = apply_ok(Some(&second), &deployment(3, "nginx", json!({"app": "nginx"})), "kubectl", false, T2);
        assert_eq!(third["metadata"]["labels"], json!({"app": "nginx", "team": "a"}));
        assert_eq!(fields(&third, "kubectl", "Apply")["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(fields(&third, "labeller", "Apply")["f:metadata"], json!({"f:labels": {"f:team": {}}}));
    }

    #[test]
    fn dropping_a_container_from_the_configuration_removes_it() {
        let mut two = deployment(1, "nginx", json!({"app": "nginx"}));
        if let Some(c) = two["spec"]["template"]["spec"]["containers"].as_array_mut() {
            c.push(json!({"name": "sidecar", "image": "busybox"}));
        }
        let first = apply_ok(None, &two, "kubectl", false, T0);
        assert_eq!(first["spec"]["template"]["spec"]["containers"].as_array().map(Vec::len), Some(2));
        let second = apply_ok(Some(&first), &deployment(1, "nginx", json!({"app": "nginx"})), "kubectl", false, T1);
        let names: Vec<&Value> =
            second["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten().map(|c| &c["name"]).collect();
        assert_eq!(names, [&json!("nginx")]);
    }

    /// Applied by kubectl, then `kubectl scale`-like update of replicas by kubectl-patch.
    fn applied_then_patched() -> Value {
        let applied = apply_ok(None, &deployment(3, "nginx", json!({"app": "nginx"})), "kubectl", false, T0);
        let mut patched = applied.clone();
        patched["spec"]["replicas"] = json!(5);
        update(Some(&applied), patched, "kubectl-patch", "apps/v1", None, true, T1)
    }

    #[test]
    fn update_moves_the_changed_field_to_the_updater() {
        let obj = applied_then_patched();
        assert_eq!(fields(&obj, "kubectl-patch", "Update"), &json!({"f:spec": {"f:replicas": {}}}));
        assert!(fields(&obj, "kubectl", "Apply")["f:spec"].get("f:replicas").is_none());
        assert_eq!(entry(&obj, "kubectl-patch", "Update").map(|e| &e["time"]), Some(&json!(T1)));
        // Apply entries come first.
        assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Apply");
    }

    #[test]
    fn apply_after_another_manager_changed_replicas_conflicts() {
        let obj = applied_then_patched();
        let err = apply(Some(&obj), &deployment(3, "nginx", json!({"app": "nginx"})), "kubectl", "apps/v1", None, false, true, T2);
        let conflicts = err.err().unwrap_or_default();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "kubectl-patch");
        assert_eq!(conflicts[0].path, ".spec.replicas");
        assert_eq!(
            conflict_message(&conflicts, "apps/v1"),
            "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            conflict_details(&conflicts, "apps/v1"),
            json!({"causes": [{"type": "FieldManagerConflict", "message": "conflict with \"kubectl-patch\" using apps/v1", "field": ".spec.replicas"}]})
        );
    }

    #[test]
    fn force_takes_the_field_over() {
        let obj = applied_then_patched();
        let forced = apply_ok(Some(&obj), &deployment(3, "nginx", json!({"app": "nginx"})), "kubectl", true, T2);
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(fields(&forced, "kubectl", "Apply")["f:spec"].get("f:replicas").is_some());
        assert!(entry(&forced, "kubectl-patch", "Update").is_none(), "an entry left with no fields is dropped");
    }

    #[test]
    fn applying_the_value_another_manager_set_shares_the_field() {
        let obj = applied_then_patched();
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 5}});
        let shared = apply_ok(Some(&obj), &config, "hpa", false, T2);
        assert_eq!(fields(&shared, "hpa", "Apply"), &json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(fields(&shared, "kubectl-patch", "Update"), &json!({"f:spec": {"f:replicas": {}}}));
        // Now that two managers own it, changing it conflicts with both.
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 7}});
        let conflicts = apply(Some(&shared), &config, "kubectl", "apps/v1", None, false, true, T2).err().unwrap_or_default();
        assert_eq!(conflicts.len(), 2);
        assert_eq!(
            conflict_message(&conflicts, "apps/v1"),
            "Apply failed with 2 conflicts: conflicts with \"hpa\":\n- .spec.replicas\nconflicts with \"kubectl-patch\" using apps/v1:\n- .spec.replicas"
        );
    }

    #[test]
    fn changing_a_container_image_conflicts_under_its_key() {
        let obj = apply_ok(None, &deployment(3, "nginx:1.14", json!({"app": "nginx"})), "kubectl", false, T0);
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
            "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}});
        let conflicts = apply(Some(&obj), &config, "ci", "apps/v1", None, false, true, T1).err().unwrap_or_default();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].path, ".spec.template.spec.containers[name=\"nginx\"].image");
        assert_eq!(
            conflict_message(&conflicts, "apps/v1"),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.template.spec.containers[name=\"nginx\"].image"
        );
        // The owner itself may change it; the container keeps its port.
        let bumped = apply_ok(Some(&obj), &deployment(3, "nginx:1.25", json!({"app": "nginx"})), "kubectl", false, T1);
        let c = &bumped["spec"]["template"]["spec"]["containers"][0];
        assert_eq!((&c["image"], &c["ports"][0]["containerPort"]), (&json!("nginx:1.25"), &json!(80)));
        // Applying the image kubectl set shares it; forcing another one moves it to ci alone,
        // while the rest of the container stays kubectl's.
        let shared = apply_ok(Some(&bumped), &config, "ci", false, T2);
        assert!(shared["metadata"]["managedFields"].as_array().is_some_and(|m| m.len() == 2));
        let mut config = config;
        config["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        let forced = apply_ok(Some(&shared), &config, "ci", true, T2);
        assert_eq!(forced["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
        let key = "k:{\"name\":\"nginx\"}";
        assert_eq!(
            fields(&forced, "ci", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"][key],
            json!({".": {}, "f:image": {}, "f:name": {}})
        );
        let kubectl = &fields(&forced, "kubectl", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"][key];
        assert!(kubectl.get("f:image").is_none() && kubectl.get("f:ports").is_some());
    }

    #[test]
    fn create_through_update_owns_every_field() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default", "uid": "u", "labels": {"app": "x"}},
            "data": {"a": "1"}});
        let obj = update(None, cm, "kubectl-create", "v1", None, false, T0);
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}])
        );
        // Structs a Go object always has get no "." and status is left to the status subresource.
        let mut d = deployment(2, "nginx", json!({"app": "nginx"}));
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}});
        d["status"] = json!({"replicas": 0});
        let obj = update(None, d, "kubectl-create", "apps/v1", None, true, T0);
        let f = fields(&obj, "kubectl-create", "Update");
        assert_eq!(f["f:spec"]["f:strategy"], json!({"f:rollingUpdate": {".": {}, "f:maxSurge": {}}, "f:type": {}}));
        assert!(f["f:spec"].get(".").is_none() && f["f:spec"]["f:template"]["f:spec"]["f:containers"].get(".").is_none());
        assert_eq!(f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["."], json!({}));
        assert!(f.get("f:status").is_none());
    }

    #[test]
    fn updates_of_untracked_objects_stay_untracked_and_no_op_updates_keep_the_time() {
        let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut next = bare.clone();
        next["data"]["a"] = json!("2");
        assert!(update(Some(&bare), next, "kubectl-edit", "v1", None, false, T1)["metadata"].get("managedFields").is_none());
        let created = update(None, bare.clone(), "kubectl-create", "v1", None, false, T0);
        let same = update(Some(&created), created.clone(), "kubectl-edit", "v1", None, false, T1);
        assert_eq!(same["metadata"]["managedFields"], created["metadata"]["managedFields"]);
    }

    #[test]
    fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
        let bare = deployment(1, "nginx", json!({"app": "nginx"}));
        let conflicts = apply(Some(&bare), &deployment(4, "nginx", json!({"app": "nginx"})), "kubectl", "apps/v1", None, false, true, T1)
            .err()
            .unwrap_or_default();
        assert_eq!(
            conflicts.iter().map(|c| (c.manager.as_str(), c.path.as_str())).collect::<Vec<_>>(),
            [("before-first-apply", ".spec.replicas")]
        );
        let same = apply_ok(Some(&bare), &bare, "kubectl", false, T1);
        assert!(entry(&same, "before-first-apply", "Update").is_some() && entry(&same, "kubectl", "Apply").is_some());
    }

    #[test]
    fn status_is_ignored_by_main_resource_apply_and_alone_in_status_apply() {
        let mut config = deployment(1, "nginx", json!({"app": "nginx"}));
        config["status"] = json!({"replicas": 9});
        let obj = apply_ok(None, &config, "kubectl", false, T0);
        assert!(obj.get("status").is_none() && fields(&obj, "kubectl", "Apply").get("f:status").is_none());
        let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 50}, "status": {"replicas": 1}});
        let obj = apply(Some(&obj), &status, "controller", "apps/v1", Some("status"), false, true, T1).unwrap_or_default();
        assert_eq!((&obj["spec"]["replicas"], &obj["status"]["replicas"]), (&json!(1), &json!(1)));
        let e = obj["metadata"]["managedFields"]
            .as_array()
            .and_then(|m| m.iter().find(|e| e["manager"] == "controller"))
            .cloned()
            .unwrap_or_default();
        assert_eq!((&e["subresource"], &e["fieldsV1"]), (&json!("status"), &json!({"f:status": {"f:replicas": {}}})));
    }

    #[test]
    fn sets_and_multi_key_lists() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["a/b"]},
            "spec": {"ports": [{"port": 443, "targetPort": 6443}], "selector": {"app": "x"}}});
        let obj = match apply(None, &svc, "m", "v1", None, false, true, T0) {
            Ok(v) => v,
            Err(c) => panic!("{c:?}"),
        };
        assert_eq!(
            fields(&obj, "m", "Apply"),
            &json!({"f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}},
                "f:spec": {"f:ports": {"k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}}, "f:selector": {}}})
        );
        // A finalizer another applier adds joins the set instead of replacing it.
        let more = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "finalizers": ["c/d"]}});
        let obj = apply(Some(&obj), &more, "other", "v1", None, false, true, T1).unwrap_or_default();
        assert_eq!(obj["metadata"]["finalizers"], json!(["a/b", "c/d"]));
    }

    #[test]
    fn garbage_managed_fields_are_ignored() {
        let garbage = [
            json!("nope"),
            json!([1, 2]),
            json!([{"manager": "x", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"k:not json": {}}}]),
            json!([{"manager": "x", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": 3}}]),
            json!([{"manager": 7, "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "x", "operation": "Delete", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
            json!([{"manager": "x", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"z": {}, "é:": {}, "i:-1": {}}}]),
        ];
        for g in garbage {
            let cm =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": g.clone()}, "data": {"a": "1"}});
            let created = update(None, cm.clone(), "m", "v1", None, false, T0);
            assert!(created["metadata"]["managedFields"].is_array());
            let _ = update(Some(&cm), cm.clone(), "m", "v1", None, false, T1);
            let _ = apply(Some(&cm), &cm, "m", "v1", None, false, false, T1);
            let _ = apply(Some(&cm), &json!([1]), "m", "v1", Some("status"), true, true, T1);
        }
        // Odd shapes in objects: lists of keyed items without keys, type changes, non-objects.
        let odd = json!({"kind": "Pod", "metadata": [], "spec": {"containers": [{"image": "x"}, 3, null], "volumes": "v"}});
        let _ = apply(
            Some(&odd),
            &json!({"kind": "Pod", "spec": {"containers": {"a": 1}, "volumes": [{"name": "v"}]}}),
            "m",
            "v1",
            None,
            true,
            true,
            T1,
        );
        let _ = update(Some(&odd), json!({"kind": "Pod", "spec": []}), "m", "v1", None, true, T1);
        assert_eq!(update(None, json!(5), "m", "v1", None, false, T0), json!(5));
    }

    #[test]
    fn fields_v1_round_trips() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"a<b\"}": {".": {}, "f:image": {}}}, "f:x": {"i:0": {}, "v:3": {}}}});
        let set = FieldSet::from_json(&v).unwrap_or_default();
        assert_eq!(
            set.to_json(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"a\\u003cb\"}": {".": {}, "f:image": {}}}, "f:x": {"i:0": {}, "v:3": {}}}})
        );
    }

    #[test]
    fn manager_names_from_user_agents() {
        assert_eq!(manager_from_user_agent("kubectl/v1.33.1 (linux/amd64) kubernetes/abc"), "kubectl");
        assert_eq!(manager_from_user_agent("kube-controller-manager/v1.33.0 (linux/amd64)/leader-election"), "kube-controller-manager");
        assert_eq!(manager_from_user_agent("Go-http-client/1.1"), "Go-http-client");
        assert_eq!(manager_from_user_agent("a\u{7}b\tc"), "abc");
        assert_eq!(manager_from_user_agent(&"x".repeat(300)).len(), 128);
        assert_eq!(manager_from_user_agent(""), "");
    }

    #[test]
    fn too_many_updaters_collapse_into_ancient_changes() {
        let mut obj = update(
            None,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}),
            "m0",
            "v1",
            None,
            false,
            T0,
        );
        for i in 1..=12 {
            let mut next = obj.clone();
            next["data"][format!("k{i}")] = json!("v");
            obj = update(Some(&obj), next, &format!("m{i}"), "v1", None, false, &format!("2026-01-01T00:00:{i:02}Z"));
        }
        let entries = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 10);
        assert!(entries.iter().any(|e| e["manager"] == "ancient-changes"));
    }

    #[test]
    fn kubectl_server_side_apply_keeps_the_client_side_annotation_current() {
        let mut live = deployment(1, "nginx", json!({"app": "nginx"}));
        live["metadata"]["annotations"] = json!({LAST_APPLIED: "{}"});
        let live = update(None, live, "kubectl-client-side-apply", "apps/v1", None, true, T0);
        let config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 1}});
        let obj = apply_ok(Some(&live), &config, "kubectl", false, T1);
        assert_eq!(
            obj["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"nginx\"},\"spec\":{\"replicas\":1}}\n"
        );
    }
}
