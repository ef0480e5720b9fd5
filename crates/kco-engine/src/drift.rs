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
//! event seen and skips the events it already counted (by id).

use std::collections::HashMap;

use kco_keycloak::{Error, KeycloakAdmin};
use serde_json::Value;

/// How far before the newest event seen each look starts (Keycloak's clock, ms).
pub const OVERLAP_MS: i64 = 60_000;
/// Events asked for per request, and at most this many requests per look.
pub const PAGE: usize = 500;
pub const MAX_PAGES: usize = 10;
/// Clients and users remembered as changed, beyond which the feed forgets them all and counts a
/// change to every client (bounded memory whatever the realm does).
pub const MAX_TRACKED: usize = 20_000;
/// The shortest admin events expiration kco relies on (seconds): events deleted before kco read
/// them would be changes it never sees.
pub const MIN_EXPIRATION_SECS: i64 = 3_600;

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
    /// Ids (with times) of the events within [`OVERLAP_MS`] of the newest: the next look lists them
    /// again.
    seen: HashMap<String, i64>,
    /// The look that last saw an event concerning this client (internal id) or user (id).
    clients: HashMap<String, u64>,
    users: HashMap<String, u64>,
    /// The look that last saw an event that may concern any client.
    realm_wide: u64,
}

/// What an admin event may have changed, as far as a KeycloakClient's check goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Concerns<'a> {
    /// That client (by internal id) and nothing of another.
    Client(&'a str),
    /// That user: a service account's grants, say.
    User(&'a str),
    /// Possibly any client of the realm.
    Realm,
}

/// What `event` (an AdminEventRepresentation) may have changed. A client's own settings, mappers,
/// scopes, roles created and authorization concern that client; a user's role mappings and
/// groups, that user; deleting a client, or deleting or renaming a client role, may remove grants
/// other clients' service accounts held, and so concerns every client; so does anything not under a
/// client or user (realm settings, realm roles, client scopes, flows), and anything unreadable.
pub fn concerns(event: &Value) -> Concerns<'_> {
    let op = event.get("operationType").and_then(Value::as_str).unwrap_or_default();
    let Some(path) = event.get("resourcePath").and_then(Value::as_str) else { return Concerns::Realm };
    let mut parts = path.split('/');
    let (kind, id) = (parts.next(), parts.next().filter(|id| !id.is_empty()));
    let sub = parts.next();
    match (kind, id) {
        (Some("clients"), Some(id)) => match (op, sub) {
            ("DELETE", None) | ("DELETE" | "UPDATE", Some("roles")) => Concerns::Realm,
            _ => Concerns::Client(id),
        },
        (Some("users"), Some(_)) if op == "DELETE" && sub.is_none() => Concerns::Realm,
        (Some("users"), Some(id)) => Concerns::User(id),
        _ => Concerns::Realm,
    }
}

/// Whether realm `rep` (a RealmRepresentation) keeps admin events kco can rely on: on, and kept at
/// least [`MIN_EXPIRATION_SECS`] (or for ever).
pub fn records_admin_events(rep: &Value) -> bool {
    let on = rep.get("adminEventsEnabled").and_then(Value::as_bool) == Some(true);
    let expiration = rep.pointer("/attributes/adminEventsExpiration");
    let kept = match expiration {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s.trim().is_empty() => true,
        Some(v) => {
            let secs = v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse::<i64>().ok()));
            secs.is_some_and(|s| s <= 0 || s >= MIN_EXPIRATION_SECS)
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

    /// Whether nothing seen since `mark` may concern the client with internal id `client` (and
    /// service account user `user`, when its grants are checked).
    pub fn quiet_since(&self, mark: Mark, client: &str, user: Option<&str>) -> bool {
        let before = |seen: Option<&u64>| seen.is_none_or(|s| *s <= mark.seq);
        self.enabled
            && self.newest.is_some()
            && mark.epoch == self.epoch
            && self.realm_wide <= mark.seq
            && before(self.clients.get(client))
            && user.is_none_or(|u| before(self.users.get(u)))
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

    /// The first look of an epoch, at the newest events there are (`recent`, up to a page): checks
    /// that start from here on saw every change before them. Those within [`OVERLAP_MS`] of the
    /// newest are remembered as seen, so that the next look, which lists them again, does not take
    /// them for changes.
    pub fn start_at(&mut self, recent: &[Value]) {
        if !self.enabled {
            self.restart();
            self.enabled = true;
        }
        let newest = recent.iter().filter_map(|e| e.get("time").and_then(Value::as_i64)).max().unwrap_or(0);
        self.newest = Some(newest);
        let floor = newest.saturating_sub(OVERLAP_MS);
        for event in recent {
            if let Some(time) = event.get("time").and_then(Value::as_i64).filter(|t| *t >= floor) {
                self.seen.insert(event_key(event, time), time);
            }
        }
        self.seq = self.seq.wrapping_add(1);
    }

    /// Where the next look starts (Keycloak's clock, ms); `None` before the first look.
    pub fn next_from(&self) -> Option<i64> {
        self.newest.map(|n| n.saturating_sub(OVERLAP_MS).max(0))
    }

    /// Take in one look's events, oldest first; `complete`: the look listed every event from
    /// [`Feed::next_from`] (not cut off after [`MAX_PAGES`]).
    pub fn take(&mut self, events: &[Value], complete: bool) {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        if !complete {
            self.realm_wide = seq;
        }
        let mut newest = self.newest.unwrap_or(0);
        for event in events {
            let Some(time) = event.get("time").and_then(Value::as_i64) else {
                // No time: cannot be placed, so it may be anything.
                self.realm_wide = seq;
                continue;
            };
            let id = event_key(event, time);
            if self.seen.contains_key(&id) {
                continue;
            }
            newest = newest.max(time);
            self.seen.insert(id, time);
            match concerns(event) {
                Concerns::Client(c) => {
                    self.clients.insert(c.to_string(), seq);
                }
                Concerns::User(u) => {
                    self.users.insert(u.to_string(), seq);
                }
                Concerns::Realm => self.realm_wide = seq,
            }
        }
        self.newest = Some(newest);
        let floor = newest.saturating_sub(OVERLAP_MS);
        self.seen.retain(|_, t| *t >= floor);
        if self.clients.len().saturating_add(self.users.len()) > MAX_TRACKED {
            self.clients.clear();
            self.users.clear();
            self.realm_wide = seq;
        }
    }
}

/// What tells an event from another: its id, or (Keycloak without ids) its time, operation and path.
fn event_key(event: &Value, time: i64) -> String {
    match event.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!(
            "{time}|{}|{}",
            event.get("operationType").and_then(Value::as_str).unwrap_or_default(),
            event.get("resourcePath").and_then(Value::as_str).unwrap_or_default()
        ),
    }
}

/// One look at realm `realm`'s record: whether it keeps admin events, and the events since the last
/// look (the newest one, at the first look of an epoch). On error the feed is as before: the next
/// look starts from the same place, so nothing is missed.
pub async fn refresh(kc: &KeycloakAdmin, realm: &str, feed: &mut Feed) -> Result<(), Error> {
    let rep = kc.get(&[realm], &[], "realm").await?;
    if !records_admin_events(&rep) {
        feed.disable();
        return Ok(());
    }
    let Some(from) = feed.next_from().filter(|_| feed.enabled) else {
        let max = PAGE.to_string();
        let recent = kc
            .get(&[realm, "admin-events"], &[("first", "0"), ("max", &max), ("direction", "desc")], "admin-event")
            .await?;
        feed.start_at(recent.as_array().map(Vec::as_slice).unwrap_or_default());
        return Ok(());
    };
    let (from, max) = (from.to_string(), PAGE.to_string());
    let mut events = Vec::new();
    let mut complete = false;
    for page in 0..MAX_PAGES {
        let first = page.saturating_mul(PAGE).to_string();
        let query =
            [("dateFrom", from.as_str()), ("direction", "asc"), ("first", first.as_str()), ("max", max.as_str())];
        let got = kc.get(&[realm, "admin-events"], &query, "admin-event").await?;
        let Some(list) = got.as_array() else {
            // Not a list: nothing here can be trusted.
            feed.disable();
            return Ok(());
        };
        events.extend(list.iter().cloned());
        if list.len() < PAGE {
            complete = true;
            break;
        }
    }
    feed.take(&events, complete);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(id: &str, time: i64, op: &str, path: &str) -> Value {
        json!({"id": id, "time": time, "operationType": op, "resourceType": "X", "resourcePath": path})
    }

    fn started() -> (Feed, Mark) {
        let mut feed = Feed::default();
        feed.start_at(&[ev("0", 1_000, "CREATE", "clients/a")]);
        let mark = feed.mark().unwrap();
        (feed, mark)
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
        assert_eq!(c("DELETE", "users/u"), "realm");
        assert_eq!(c("UPDATE", "roles-by-id/r"), "realm");
        assert_eq!(c("DELETE", "client-scopes/s"), "realm");
        assert_eq!(c("UPDATE", "events/config"), "realm");
        assert_eq!(c("UPDATE", "clients/"), "realm");
        assert_eq!(c("UPDATE", ""), "realm");
        assert_eq!(c("UPDATE", "clients/ü/ß/🦀"), "client ü", "multi-byte ids are only compared");
        assert_eq!(concerns(&json!({"operationType": "UPDATE", "resourcePath": null})), Concerns::Realm);
        assert_eq!(concerns(&json!("not an event")), Concerns::Realm);
    }

    impl Concerns<'_> {
        fn to_string_for_test(&self) -> String {
            match self {
                Concerns::Client(c) => format!("client {c}"),
                Concerns::User(u) => format!("user {u}"),
                Concerns::Realm => "realm".into(),
            }
        }
    }

    #[test]
    fn a_realm_is_followed_only_when_it_keeps_admin_events_long_enough() {
        assert!(records_admin_events(&json!({"adminEventsEnabled": true})));
        assert!(records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "86400"}})
        ));
        assert!(records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": ""}})
        ));
        assert!(!records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "60"}})
        ));
        assert!(!records_admin_events(
            &json!({"adminEventsEnabled": true, "attributes": {"adminEventsExpiration": "soon"}})
        ));
        assert!(!records_admin_events(&json!({"adminEventsEnabled": false})));
        assert!(!records_admin_events(&json!({})));
        assert!(!records_admin_events(&json!([])));
    }

    #[test]
    fn no_mark_before_the_first_look_or_while_events_are_off() {
        let mut feed = Feed::default();
        assert_eq!(feed.mark(), None);
        feed.disable();
        assert_eq!(feed.mark(), None);
        feed.start_at(&[]);
        assert!(feed.mark().is_some());
        assert_eq!(feed.next_from(), Some(0), "no event yet: the next look lists them all");
    }

    #[test]
    fn a_check_is_quiet_until_an_event_concerns_its_client_or_user() {
        let (mut feed, mark) = started();
        feed.take(
            &[
                ev("1", 1_100, "UPDATE", "clients/other"),
                ev("2", 1_200, "CREATE", "users/stranger/role-mappings/realm"),
            ],
            true,
        );
        assert!(feed.quiet_since(mark, "a", Some("sa-a")), "other clients and users do not concern it");
        feed.take(&[ev("3", 1_300, "CREATE", "users/sa-a/role-mappings/realm")], true);
        assert!(!feed.quiet_since(mark, "a", Some("sa-a")));
        assert!(feed.quiet_since(mark, "a", None), "grants not checked: its user does not matter");
        let later = feed.mark().unwrap();
        assert!(feed.quiet_since(later, "a", Some("sa-a")), "a check after the event saw it");
        feed.take(&[ev("4", 1_400, "UPDATE", "clients/a")], true);
        assert!(!feed.quiet_since(later, "a", None));
    }

    #[test]
    fn an_event_listed_again_by_the_overlap_counts_once_and_a_late_one_still_counts() {
        let (mut feed, _) = started();
        feed.take(&[ev("1", 5_000, "UPDATE", "clients/a")], true);
        let mark = feed.mark().unwrap();
        assert_eq!(feed.next_from(), Some(0));
        // The next look lists event 1 again (overlap), and one committed late with an older time.
        feed.take(&[ev("1", 5_000, "UPDATE", "clients/a"), ev("2", 4_000, "UPDATE", "clients/b")], true);
        assert!(feed.quiet_since(mark, "a", None), "the same event twice is one change, already seen");
        assert!(!feed.quiet_since(mark, "b", None), "seen after the mark, whatever its timestamp");
    }

    #[test]
    fn realm_wide_events_gaps_and_overflow_concern_every_client() {
        let (mut feed, mark) = started();
        feed.take(&[ev("1", 1_100, "UPDATE", "roles-by-id/r")], true);
        assert!(!feed.quiet_since(mark, "a", None));

        let (mut feed, mark) = started();
        feed.take(&[], false);
        assert!(!feed.quiet_since(mark, "a", None), "a look cut off after its last page may have missed some");

        let (mut feed, mark) = started();
        feed.take(&[json!({"id": "x", "operationType": "UPDATE", "resourcePath": "clients/b"})], true);
        assert!(!feed.quiet_since(mark, "a", None), "an event without a time cannot be placed");

        let (mut feed, mark) = started();
        let many: Vec<Value> =
            (0..=MAX_TRACKED).map(|i| ev(&format!("m{i}"), 2_000, "UPDATE", &format!("users/u{i}"))).collect();
        feed.take(&many, true);
        assert!(!feed.quiet_since(mark, "a", None), "too much to follow: every client once more");
        assert!(feed.clients.len() + feed.users.len() <= MAX_TRACKED);
        let after = feed.mark().unwrap();
        assert!(feed.quiet_since(after, "a", None));
    }

    #[test]
    fn events_turned_off_and_on_again_void_every_mark() {
        let (mut feed, mark) = started();
        feed.disable();
        assert!(!feed.quiet_since(mark, "a", None));
        assert_eq!(feed.mark(), None);
        feed.start_at(&[ev("9", 9_000, "UPDATE", "events/config")]);
        assert!(!feed.quiet_since(mark, "a", None), "a mark of an earlier epoch");
        let fresh = feed.mark().unwrap();
        assert!(feed.quiet_since(fresh, "a", None));
    }

    #[test]
    fn the_events_the_first_look_found_are_not_changes_when_listed_again() {
        let mut feed = Feed::default();
        let recent = [
            ev("3", 100_000, "CREATE", "users/sa/role-mappings/realm"),
            ev("2", 90_000, "CREATE", "clients/a"),
            ev("1", 10_000, "CREATE", "clients/old"),
        ];
        feed.start_at(&recent);
        let mark = feed.mark().unwrap();
        assert_eq!(feed.next_from(), Some(100_000 - OVERLAP_MS));
        feed.take(
            &[ev("2", 90_000, "CREATE", "clients/a"), ev("3", 100_000, "CREATE", "users/sa/role-mappings/realm")],
            true,
        );
        assert!(feed.quiet_since(mark, "a", Some("sa")), "listed again by the overlap, seen before the mark");
        feed.take(&[ev("4", 100_001, "UPDATE", "clients/a")], true);
        assert!(!feed.quiet_since(mark, "a", Some("sa")));
    }

    #[test]
    fn the_overlap_remembers_only_recent_ids() {
        let (mut feed, _) = started();
        feed.take(
            &[ev("old", 1_000, "UPDATE", "clients/a"), ev("new", 1_000 + 2 * OVERLAP_MS, "UPDATE", "clients/a")],
            true,
        );
        assert!(!feed.seen.contains_key("old"));
        assert!(feed.seen.contains_key("new"));
    }
}
