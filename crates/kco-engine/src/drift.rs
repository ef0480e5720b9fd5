//! Drift seen through the realm's admin events (#11). A realm whose admin events are on records
//! every change made through the Admin API (the console, scripts, kco itself). kco reads that record
//! once per realm per interval, and a resync then reads back only the clients an event since their
//! last full check may concern. Everything kco cannot tell apart counts as a change to every client
//! of the realm: a realm-wide event (a realm role, client scope or flow changed; a client or role
//! deleted), more events than one look takes in, events switched off or kept too briefly, an answer
//! that does not parse. Changes that bypass the Admin API (the database, an import at startup) leave
//! no event: the operator's `--full-resync` reads every client whole at that interval regardless.
//!
//! Events are told apart by the refresh that first saw them (`seq`), not by Keycloak's timestamps:
//! a check that starts after refresh `n` saw everything committed before it, and an event committed
//! later is seen by a later refresh, even one whose timestamp is older than the newest seen (a slow
//! transaction, another Keycloak node's clock). Each look starts [`OVERLAP_MS`] before the newest
//! event seen and skips the events it already counted (by id); once the newest is that old by kco's
//! clock, every event as old is committed, and looks start at the newest itself.
//!
//! Events are read into [`AdminEvent`] (four fields), a page of [`PAGE`] at a time, each page taken in
//! before the next is asked for: a burst of thousands of changes costs kco little memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kco_keycloak::{Error, KeycloakAdmin};
use serde::Deserialize;
use serde_json::Value;

/// How far before the newest event seen each look starts (Keycloak's clock, ms).
pub const OVERLAP_MS: i64 = 60_000;
const OVERLAP: Duration = Duration::from_millis(60_000);
/// Events asked for per request, and at most this many requests per look.
pub const PAGE: usize = 200;
pub const MAX_PAGES: usize = 25;
/// Clients and users remembered as changed, beyond which the feed forgets them all and counts a
/// change to every client (bounded memory whatever the realm does).
pub const MAX_TRACKED: usize = 20_000;
/// The shortest admin events expiration kco relies on (seconds): events deleted before kco read
/// them would be changes it never sees.
pub const MIN_EXPIRATION_SECS: i64 = 3_600;

/// A Keycloak id (a client's or a user's) as the feed keeps it: a hash, 8 bytes whatever the id. Two
/// ids with the same hash only make one look changed when the other is: a read too many.
pub type Id = u64;

/// The [`Id`] of a Keycloak id.
pub fn id(s: &str) -> Id {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// What a full check of one KeycloakClient read, as far as events go.
#[derive(Debug, Default)]
pub struct Checked<'a> {
    /// The client's internal id.
    pub client: Id,
    /// The internal ids of the other clients whose roles its service account is granted (a
    /// rename of one of them changes what the grants name).
    pub others: &'a [Id],
    /// Its service account user, when the check read its grants.
    pub user: Option<Id>,
    /// Whether it has authorization settings (user policies name users).
    pub authorization: bool,
}

/// Where a realm's record stood when a full check started: a later check is quiet when nothing
/// seen since concerns the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    epoch: u64,
    seq: u64,
}

/// One realm's admin events as kco has followed them.
#[derive(Debug, Default)]
pub struct Feed {
    /// The realm records admin events kco can rely on (as of the last look).
    enabled: bool,
    /// Bumped each time the record was broken (off, then on again): marks of another epoch are
    /// worth nothing.
    epoch: u64,
    /// Looks taken (at least the first one) in this epoch.
    seq: u64,
    /// The newest event time seen (Keycloak's clock, ms); `None` before the first look.
    newest: Option<i64>,
    /// When (kco's clock) `newest` was first seen: [`OVERLAP_MS`] later, every event as old as it
    /// is committed, and looks start at `newest` itself.
    newest_at: Option<Instant>,
    /// Ids (with times) of the events within [`OVERLAP_MS`] of the newest: the next look lists them
    /// again.
    seen: HashMap<EventKey, i64>,
    /// The look that last saw an event concerning this client (internal id) or user (id).
    clients: HashMap<Id, u64>,
    users: HashMap<Id, u64>,
    /// The look that last saw an event that may concern any client.
    realm_wide: u64,
    /// The look that last saw a user deleted: it leaves that user's authorization policies.
    users_deleted: u64,
}

/// The part of an AdminEventRepresentation kco reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminEvent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub time: Option<i64>,
    #[serde(default)]
    pub operation_type: Option<String>,
    #[serde(default)]
    pub resource_path: Option<String>,
}

/// What an admin event may have changed, as far as a KeycloakClient's check goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Concerns<'a> {
    /// That client (by internal id) and nothing of another.
    Client(&'a str),
    /// That user: a service account's grants, say.
    User(&'a str),
    /// That user, deleted: also the authorization policies that named it.
    UserDeleted(&'a str),
    /// Possibly any client of the realm.
    Realm,
}

/// What `event` (an AdminEventRepresentation) may have changed. A client's own settings (its
/// clientId too: checks that grant its roles name it, see [`Feed::quiet_since`]), mappers, scopes,
/// roles created and authorization concern that client; a user's role mappings and groups, that
/// user; deleting a client, or deleting or renaming a client role, may remove grants other
/// clients' service accounts held, and so concerns every client; so does anything not under a
/// client or user (realm settings, realm roles, client scopes, groups, flows), and anything
/// unreadable.
pub fn concerns(event: &AdminEvent) -> Concerns<'_> {
    let op = event.operation_type.as_deref().unwrap_or_default();
    let Some(path) = event.resource_path.as_deref() else { return Concerns::Realm };
    let mut parts = path.split('/');
    let (kind, id) = (parts.next(), parts.next().filter(|id| !id.is_empty()));
    let sub = parts.next();
    match (kind, id) {
        (Some("clients"), Some(id)) => match (op, sub) {
            ("DELETE", None) | ("DELETE" | "UPDATE", Some("roles")) => Concerns::Realm,
            _ => Concerns::Client(id),
        },
        (Some("users"), Some(id)) if op == "DELETE" && sub.is_none() => Concerns::UserDeleted(id),
        (Some("users"), Some(id)) => Concerns::User(id),
        _ => Concerns::Realm,
    }
}

/// Whether realm `rep` (a RealmRepresentation) keeps admin events kco can rely on: on, and kept for
/// ever or at least `min_secs` (at least [`MIN_EXPIRATION_SECS`]): longer than a quiet client may
/// go unread, so that no event it needs expires before kco looked.
pub fn records_admin_events(rep: &Value, min_secs: i64) -> bool {
    let min_secs = min_secs.max(MIN_EXPIRATION_SECS);
    let on = rep.get("adminEventsEnabled").and_then(Value::as_bool) == Some(true);
    let expiration = rep.pointer("/attributes/adminEventsExpiration");
    let kept = match expiration {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s.trim().is_empty() => true,
        Some(v) => {
            let secs = v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()));
            secs.is_some_and(|s| s <= 0 || s >= min_secs)
        }
    };
    on && kept
}

impl Feed {
    /// Where the record stands now, for a full check about to start; `None` when the realm keeps
    /// no record kco can use (or none was read yet).
    pub fn mark(&self) -> Option<Mark> {
        (self.enabled && self.newest.is_some()).then_some(Mark { epoch: self.epoch, seq: self.seq })
    }

    /// Whether nothing seen since `mark` may concern what a check of `checked` read.
    pub fn quiet_since(&self, mark: Mark, checked: &Checked<'_>) -> bool {
        let before = |seen: Option<&u64>| seen.is_none_or(|s| *s <= mark.seq);
        self.enabled
            && self.newest.is_some()
            && mark.epoch == self.epoch
            && self.realm_wide <= mark.seq
            && (!checked.authorization || self.users_deleted <= mark.seq)
            && before(self.clients.get(&checked.client))
            && checked.others.iter().all(|c| before(self.clients.get(c)))
            && checked.user.is_none_or(|u| before(self.users.get(&u)))
    }

    /// The realm keeps no usable record (any more): every mark taken so far is void.
    pub fn disable(&mut self) {
        if self.enabled || self.newest.is_some() {
            self.restart();
        }
        self.enabled = false;
    }

    /// A new epoch: nothing followed so far counts.
    fn restart(&mut self) {
        *self = Feed { epoch: self.epoch.wrapping_add(1), ..Feed::default() };
    }

    /// The first look of an epoch begins: checks that start once it is over saw every change
    /// before it. The look then takes in the newest events there are ([`Feed::take_recent`]).
    pub fn start(&mut self, now: Instant) {
        if !self.enabled {
            self.restart();
            self.enabled = true;
        }
        self.newest = Some(self.newest.unwrap_or(0));
        self.newest_at = Some(now);
        self.seq = self.seq.wrapping_add(1);
    }

    /// A page of the first look's events, newest first, back to [`OVERLAP_MS`] before the newest:
    /// remembered as seen, so that the next look, which lists them again, does not take them for
    /// changes (one the first look did not reach counts as a change: a read too many, never one
    /// too few).
    pub fn take_recent(&mut self, recent: &[AdminEvent]) {
        let newest = recent.iter().filter_map(|e| e.time).chain(self.newest).max().unwrap_or(0);
        self.newest = Some(newest);
        let floor = newest.saturating_sub(OVERLAP_MS);
        for event in recent {
            if let Some(time) = event.time.filter(|t| *t >= floor) {
                self.seen.insert(event_key(event, time), time);
            }
        }
    }

    /// Whether, at `now`, the newest event seen is old enough that every event as old is committed.
    fn settled(&self, now: Instant) -> bool {
        self.newest_at.is_some_and(|at| now.saturating_duration_since(at) >= OVERLAP)
    }

    /// Where the next look starts (Keycloak's clock, ms; inclusive); `None` before the first look.
    pub fn next_from(&self, now: Instant) -> Option<i64> {
        let overlap = if self.settled(now) { 0 } else { OVERLAP_MS };
        self.newest.map(|n| n.saturating_sub(overlap).max(0))
    }

    /// A look (after the first) begins at `now`: what it takes in counts as seen after every mark
    /// taken so far.
    pub fn look(&mut self, now: Instant) -> Look {
        self.seq = self.seq.wrapping_add(1);
        Look { now, settled: self.settled(now) }
    }

    /// The look could not list every event from where it started (cut off after [`MAX_PAGES`]):
    /// any client may be concerned.
    pub fn cut_off(&mut self) {
        self.realm_wide = self.seq;
    }

    /// Take in one page of a look's events, oldest first.
    pub fn take(&mut self, look: &Look, events: &[AdminEvent]) {
        let seq = self.seq;
        let mut newest = self.newest.unwrap_or(0);
        for event in events {
            let Some(time) = event.time else {
                // No time: cannot be placed, so it may be anything.
                self.realm_wide = seq;
                continue;
            };
            let key = event_key(event, time);
            if self.seen.contains_key(&key) {
                continue;
            }
            newest = newest.max(time);
            self.seen.insert(key, time);
            match concerns(event) {
                Concerns::Client(c) => {
                    self.clients.insert(id(c), seq);
                }
                Concerns::User(u) => {
                    self.users.insert(id(u), seq);
                }
                Concerns::UserDeleted(u) => {
                    self.users.insert(id(u), seq);
                    self.users_deleted = seq;
                }
                Concerns::Realm => self.realm_wide = seq,
            }
        }
        if self.newest != Some(newest) {
            self.newest = Some(newest);
            self.newest_at = Some(look.now);
        }
        // What the next look lists again: back to OVERLAP_MS before the newest, or only the newest
        // if this look already started there (a newer event since does not make older ones visible
        // later than they would have been).
        let floor =
            newest.saturating_sub(if look.settled && self.newest_at != Some(look.now) { 0 } else { OVERLAP_MS });
        self.seen.retain(|_, t| *t >= floor);
        if self.clients.len().saturating_add(self.users.len()) > MAX_TRACKED {
            self.clients.clear();
            self.users.clear();
            self.realm_wide = seq;
        }
        // A burst's thousands of events leave no table sized for them behind.
        if self.seen.capacity() > self.seen.len().saturating_mul(4).saturating_add(64) {
            self.seen.shrink_to_fit();
        }
        if self.clients.capacity() > self.clients.len().saturating_mul(4).saturating_add(64) {
            self.clients.shrink_to_fit();
        }
        if self.users.capacity() > self.users.len().saturating_mul(4).saturating_add(64) {
            self.users.shrink_to_fit();
        }
    }
}

/// A look after the first (see [`Feed::look`]).
#[derive(Debug)]
pub struct Look {
    now: Instant,
    /// It started at the newest event seen (no overlap).
    settled: bool,
}

/// What tells an event from another: its id, or (Keycloak without ids) its time, operation and path.
fn event_key(event: &AdminEvent, time: i64) -> EventKey {
    match &event.id {
        Some(id) => uuid_bits(id).map_or_else(|| EventKey::Other(id.clone()), EventKey::Uuid),
        None => EventKey::Other(format!(
            "{time}|{}|{}",
            event.operation_type.as_deref().unwrap_or_default(),
            event.resource_path.as_deref().unwrap_or_default()
        )),
    }
}

/// An event's identity as [`Feed`] remembers it: Keycloak's ids are UUIDs, kept as their 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum EventKey {
    Uuid(u128),
    Other(String),
}

/// The 128 bits of a UUID written the usual way (32 hex digits, dashes anywhere), else `None`.
fn uuid_bits(s: &str) -> Option<u128> {
    let mut bits: u128 = 0;
    let mut digits = 0;
    for c in s.chars() {
        if c == '-' {
            continue;
        }
        bits = bits.checked_mul(16)?.checked_add(u128::from(c.to_digit(16)?))?;
        digits += 1;
    }
    (digits == 32).then_some(bits)
}

/// One look at realm `realm`'s record: whether it keeps admin events, and the events since the last
/// look (the newest one, at the first look of an epoch). On error the feed is as before: the next
/// look starts from the same place, so nothing is missed.
pub async fn refresh(kc: &KeycloakAdmin, realm: &str, feed: &mut Feed, min_secs: i64) -> Result<(), Error> {
    let rep = kc.get(&[realm], &[], "realm").await?;
    if !records_admin_events(&rep, min_secs) {
        feed.disable();
        return Ok(());
    }
    let now = Instant::now();
    let max = PAGE.to_string();
    let Some(from) = feed.next_from(now).filter(|_| feed.enabled) else {
        // The first look: newest first, back to OVERLAP_MS before the newest (or MAX_PAGES).
        feed.start(now);
        let mut newest = None;
        for page in 0..MAX_PAGES {
            let first = page.saturating_mul(PAGE).to_string();
            let query = [("first", first.as_str()), ("max", max.as_str()), ("direction", "desc")];
            let list: Vec<AdminEvent> = kc.get_as(&[realm, "admin-events"], &query, "admin-event").await?;
            newest = newest.or_else(|| list.first().and_then(|e| e.time));
            feed.take_recent(&list);
            let oldest = list.last().and_then(|e| e.time).unwrap_or(0);
            if list.len() < PAGE || oldest < newest.unwrap_or(0).saturating_sub(OVERLAP_MS) {
                break;
            }
        }
        return Ok(());
    };
    let from = from.to_string();
    let look = feed.look(now);
    for page in 0..MAX_PAGES {
        let first = page.saturating_mul(PAGE).to_string();
        let query =
            [("dateFrom", from.as_str()), ("direction", "asc"), ("first", first.as_str()), ("max", max.as_str())];
        let list: Vec<AdminEvent> = kc.get_as(&[realm, "admin-events"], &query, "admin-event").await?;
        feed.take(&look, &list);
        if list.len() < PAGE {
            return Ok(());
        }
    }
    feed.cut_off();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, time: i64, op: &str, path: &str) -> AdminEvent {
        raw(json!({"id": id, "time": time, "operationType": op, "resourceType": "X", "resourcePath": path}))
    }

    fn raw(v: Value) -> AdminEvent {
        serde_json::from_value(v).unwrap_or_default()
    }

    /// One fixed instant: the tests that need time to pass add to it.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    /// A look (not the first) at t0 that listed `events`; `complete`: not cut off.
    fn take(feed: &mut Feed, events: &[AdminEvent], complete: bool) {
        let look = feed.look(t0());
        feed.take(&look, events);
        if !complete {
            feed.cut_off();
        }
    }

    /// The first look at t0, finding `recent`.
    fn start(feed: &mut Feed, recent: &[AdminEvent]) {
        feed.start(t0());
        feed.take_recent(recent);
    }

    #[test]
    fn once_the_newest_event_is_a_minute_old_looks_start_at_it() {
        let (mut feed, _) = started();
        assert_eq!(feed.next_from(t0()), Some(0), "not settled: look back (not before 0)");
        let later = t0() + OVERLAP;
        assert_eq!(feed.next_from(later), Some(1_000), "settled: only the newest is listed again");
        let look = feed.look(later);
        feed.take(&look, &[ev("0", 1_000, "CREATE", "clients/a")]);
        assert!(
            feed.seen.contains_key(&EventKey::Other("0".into())),
            "the newest is still known, so listing it again is no change"
        );
        let look = feed.look(later);
        feed.take(&look, &[ev("5", 95_000, "CREATE", "clients/b")]);
        assert_eq!(feed.next_from(later), Some(95_000 - OVERLAP_MS), "a new newest: look back again for a minute");
    }

    fn q(feed: &Feed, mark: Mark, client: &str, user: Option<&str>) -> bool {
        feed.quiet_since(mark, &Checked { client: id(client), user: user.map(id), ..Default::default() })
    }

    #[test]
    fn a_rename_of_a_client_whose_roles_are_granted_and_a_deleted_user_concern_who_depends_on_them() {
        let (mut feed, mark) = started();
        take(&mut feed, &[ev("1", 1_100, "UPDATE", "clients/granting")], true);
        let plain = Checked { client: id("a"), ..Default::default() };
        let granting = [id("granting")];
        let granted = Checked { client: id("a"), others: &granting, ..Default::default() };
        assert!(feed.quiet_since(mark, &plain));
        assert!(!feed.quiet_since(mark, &granted), "its grants name that client's roles");

        let (mut feed, mark) = started();
        take(&mut feed, &[ev("1", 1_100, "DELETE", "users/someone")], true);
        assert!(feed.quiet_since(mark, &plain), "an ordinary user deleted concerns no plain client");
        let authz = Checked { client: id("a"), authorization: true, ..Default::default() };
        assert!(!feed.quiet_since(mark, &authz), "its user policies may have named that user");
    }

    fn started() -> (Feed, Mark) {
        let mut feed = Feed::default();
        start(&mut feed, &[ev("0", 1_000, "CREATE", "clients/a")]);
        let mark = feed.mark().unwrap();
        (feed, mark)
    }

    #[test]
    fn event_ids_that_are_uuids_are_kept_as_their_bits_and_others_as_they_are() {
        let k = |id: &str| event_key(&ev(id, 1, "UPDATE", "clients/a"), 1);
        assert_eq!(k("81e5c63f-cdf2-4785-952b-a69508b0b596"), EventKey::Uuid(0x81e5c63f_cdf2_4785_952b_a69508b0b596));
        assert_eq!(k("81E5C63FCDF24785952BA69508B0B596"), k("81e5c63f-cdf2-4785-952b-a69508b0b596"));
        assert_eq!(k("81e5c63f-cdf2"), EventKey::Other("81e5c63f-cdf2".into()));
        assert_eq!(
            k("ü81e5c63f-cdf2-4785-952b-a69508b0b596"),
            EventKey::Other("ü81e5c63f-cdf2-4785-952b-a69508b0b596".into())
        );
        assert_eq!(
            k("81e5c63f-cdf2-4785-952b-a69508b0b5961"),
            EventKey::Other("81e5c63f-cdf2-4785-952b-a69508b0b5961".into())
        );
    }

    #[test]
    fn what_an_event_concerns() {
        let c = |op, path| concerns(&ev("1", 1, op, path)).to_string_for_test();
        assert_eq!(c("UPDATE", "clients/a"), "client a");
        assert_eq!(c("CREATE", "clients/a/roles/r"), "client a");
        assert_eq!(c("DELETE", "clients/a/protocol-mappers/models/m"), "client a");
        assert_eq!(c("ACTION", "clients/a/client-secret"), "client a");
        assert_eq!(c("CREATE", "clients/a/authz/resource-server/policy/x"), "client a");
        assert_eq!(c("DELETE", "clients/a"), "realm", "another client's service account may hold its roles");
        assert_eq!(c("DELETE", "clients/a/roles/r"), "realm");
        assert_eq!(c("UPDATE", "clients/a/roles/r"), "realm", "a renamed role changes grants elsewhere");
        assert_eq!(c("CREATE", "users/u/role-mappings/realm"), "user u");
        assert_eq!(c("DELETE", "users/u/role-mappings/clients/a"), "user u");
        assert_eq!(c("DELETE", "users/u"), "deleted user u");
        assert_eq!(c("UPDATE", "roles-by-id/r"), "realm");
        assert_eq!(c("DELETE", "client-scopes/s"), "realm");
        assert_eq!(c("UPDATE", "events/config"), "realm");
        assert_eq!(c("UPDATE", "clients/"), "realm");
        assert_eq!(c("UPDATE", ""), "realm");
        assert_eq!(c("UPDATE", "clients/ü/ß/🦀"), "client ü", "multi-byte ids are only compared");
        assert_eq!(concerns(&raw(json!({"operationType": "UPDATE", "resourcePath": null}))), Concerns::Realm);
        assert_eq!(concerns(&raw(json!("not an event"))), Concerns::Realm);
    }

    impl Concerns<'_> {
        fn to_string_for_test(&self) -> String {
            match self {
                Concerns::Client(c) => format!("client {c}"),
                Concerns::User(u) => format!("user {u}"),
                Concerns::UserDeleted(u) => format!("deleted user {u}"),
                Concerns::Realm => "realm".into(),
            }
        }
    }

    #[test]
    fn a_realm_is_followed_only_when_it_keeps_admin_events_long_enough() {
        assert!(records_admin_events(&json!({"adminEventsEnabled": true}), 0));
        assert!(records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "86400"}}),
            0
        ));
        assert!(records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": ""}}),
            0
        ));
        assert!(!records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "60"}}),
            0
        ));
        assert!(!records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "soon"}}),
            0
        ));
        assert!(!records_admin_events(&json!({"adminEventsEnabled": false}), 0));
        assert!(!records_admin_events(&json!({}), 0));
        assert!(!records_admin_events(&json!([]), 0));
        let day = json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "86400"}});
        assert!(records_admin_events(&day, 86_400));
        assert!(!records_admin_events(&day, 86_401), "kept shorter than a quiet client may go unread");
    }

    #[test]
    fn no_mark_before_the_first_look_or_while_events_are_off() {
        let mut feed = Feed::default();
        assert_eq!(feed.mark(), None);
        feed.disable();
        assert_eq!(feed.mark(), None);
        start(&mut feed, &[]);
        assert!(feed.mark().is_some());
        assert_eq!(feed.next_from(t0()), Some(0), "no event yet: the next look lists them all");
    }

    #[test]
    fn a_check_is_quiet_until_an_event_concerns_its_client_or_user() {
        let (mut feed, mark) = started();
        take(
            &mut feed,
            &[
                ev("1", 1_100, "UPDATE", "clients/other"),
                ev("2", 1_200, "CREATE", "users/stranger/role-mappings/realm"),
            ],
            true,
        );
        assert!(q(&feed, mark, "a", Some("sa-a")), "other clients and users do not concern it");
        take(&mut feed, &[ev("3", 1_300, "CREATE", "users/sa-a/role-mappings/realm")], true);
        assert!(!q(&feed, mark, "a", Some("sa-a")));
        assert!(q(&feed, mark, "a", None), "grants not checked: its user does not matter");
        let later = feed.mark().unwrap();
        assert!(q(&feed, later, "a", Some("sa-a")), "a check after the event saw it");
        take(&mut feed, &[ev("4", 1_400, "UPDATE", "clients/a")], true);
        assert!(!q(&feed, later, "a", None));
    }

    #[test]
    fn an_event_listed_again_by_the_overlap_counts_once_and_a_late_one_still_counts() {
        let (mut feed, _) = started();
        take(&mut feed, &[ev("1", 5_000, "UPDATE", "clients/a")], true);
        let mark = feed.mark().unwrap();
        assert_eq!(feed.next_from(t0()), Some(0));
        // The next look lists event 1 again (overlap), and one committed late with an older time.
        take(&mut feed, &[ev("1", 5_000, "UPDATE", "clients/a"), ev("2", 4_000, "UPDATE", "clients/b")], true);
        assert!(q(&feed, mark, "a", None), "the same event twice is one change, already seen");
        assert!(!q(&feed, mark, "b", None), "seen after the mark, whatever its timestamp");
    }

    #[test]
    fn realm_wide_events_gaps_and_overflow_concern_every_client() {
        let (mut feed, mark) = started();
        take(&mut feed, &[ev("1", 1_100, "UPDATE", "roles-by-id/r")], true);
        assert!(!q(&feed, mark, "a", None));

        let (mut feed, mark) = started();
        take(&mut feed, &[], false);
        assert!(!q(&feed, mark, "a", None), "a look cut off after its last page may have missed some");

        let (mut feed, mark) = started();
        take(&mut feed, &[raw(json!({"id": "x", "operationType": "UPDATE", "resourcePath": "clients/b"}))], true);
        assert!(!q(&feed, mark, "a", None), "an event without a time cannot be placed");

        let (mut feed, mark) = started();
        let many: Vec<AdminEvent> =
            (0..=MAX_TRACKED).map(|i| ev(&format!("m{i}"), 2_000, "UPDATE", &format!("users/u{i}"))).collect();
        take(&mut feed, &many, true);
        assert!(!q(&feed, mark, "a", None), "too much to follow: every client once more");
        assert!(feed.clients.len() + feed.users.len() <= MAX_TRACKED);
        let after = feed.mark().unwrap();
        assert!(q(&feed, after, "a", None));
    }

    #[test]
    fn events_turned_off_and_on_again_void_every_mark() {
        let (mut feed, mark) = started();
        feed.disable();
        assert!(!q(&feed, mark, "a", None));
        assert_eq!(feed.mark(), None);
        start(&mut feed, &[ev("9", 9_000, "UPDATE", "events/config")]);
        assert!(!q(&feed, mark, "a", None), "a mark of an earlier epoch");
        let fresh = feed.mark().unwrap();
        assert!(q(&feed, fresh, "a", None));
    }

    #[test]
    fn the_events_the_first_look_found_are_not_changes_when_listed_again() {
        let mut feed = Feed::default();
        let recent = [
            ev("3", 100_000, "CREATE", "users/sa/role-mappings/realm"),
            ev("2", 90_000, "CREATE", "clients/a"),
            ev("1", 10_000, "CREATE", "clients/old"),
        ];
        start(&mut feed, &recent);
        let mark = feed.mark().unwrap();
        assert_eq!(feed.next_from(t0()), Some(100_000 - OVERLAP_MS));
        take(
            &mut feed,
            &[ev("2", 90_000, "CREATE", "clients/a"), ev("3", 100_000, "CREATE", "users/sa/role-mappings/realm")],
            true,
        );
        assert!(q(&feed, mark, "a", Some("sa")), "listed again by the overlap, seen before the mark");
        take(&mut feed, &[ev("4", 100_001, "UPDATE", "clients/a")], true);
        assert!(!q(&feed, mark, "a", Some("sa")));
    }

    #[test]
    fn the_overlap_remembers_only_recent_ids() {
        let (mut feed, _) = started();
        take(
            &mut feed,
            &[ev("old", 1_000, "UPDATE", "clients/a"), ev("new", 1_000 + 2 * OVERLAP_MS, "UPDATE", "clients/a")],
            true,
        );
        assert!(!feed.seen.contains_key(&EventKey::Other("old".into())));
        assert!(feed.seen.contains_key(&EventKey::Other("new".into())));
    }
}
