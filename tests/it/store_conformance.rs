//! One conformance suite, written once, run against every store.
//!
//! PostgreSQL runs when `LATCHKEY_TEST_POSTGRES_URL` names a server
//! (`.ci/run` always sets it); each test gets a database of its own, dropped
//! afterwards.

use crate::support;

use latchkey::store::{
    FailurePolicy, NewUser, SessionKey, SessionRecord, StoreError, Stores, UserId, now_millis,
};
use support::StoreFixture;

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        username_key: name.to_lowercase(),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
        roles: vec!["admin".to_owned()],
        display_name: None,
        email: None,
    }
}

fn session_for(user: UserId, byte: u8, now: i64) -> SessionRecord {
    SessionRecord {
        key: SessionKey([byte; 32]),
        user_id: user,
        credential_epoch: 0,
        roles_epoch: 0,
        created_at: now,
        last_seen: now,
    }
}

/// An hour in milliseconds; the fixtures' idle timeout (Redis expires by it itself).
const HOUR: i64 = 3_600_000;

const POLICY: FailurePolicy = FailurePolicy {
    max_failures: 3,
    window: 10_000,
    lockout: 5_000,
};

async fn users_are_unique_by_key_and_round_trip(s: &Stores) {
    let created = s.users.create_user(new_user("Ann")).await.unwrap();
    assert_eq!(created.username, "Ann");
    assert_eq!(created.roles, ["admin"]);
    assert!(!created.disabled);
    let again = s.users.create_user(new_user("ANN")).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let by_key = s.users.user_by_key("ann").await.unwrap().unwrap();
    assert_eq!(by_key, created);
    assert_eq!(
        s.users.user_by_id(created.id).await.unwrap().unwrap(),
        created
    );
    assert!(s.users.user_by_key("bob").await.unwrap().is_none());
    assert_eq!(s.users.count_users().await.unwrap(), 1);
    s.users.create_user(new_user("Bob")).await.unwrap();
    let names: Vec<_> = s
        .users
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["Ann", "Bob"]);
}

async fn user_changes_bump_the_right_epochs(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    assert!(
        s.users
            .set_password_hash(u.id, "$2b$04$rehash", false)
            .await
            .unwrap()
    );
    let after_rehash = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(after_rehash.password_hash, "$2b$04$rehash");
    assert_eq!(
        after_rehash.credential_epoch, u.credential_epoch,
        "a rehash keeps sessions"
    );
    assert!(s.users.set_password_hash(u.id, "new", true).await.unwrap());
    let changed = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(changed.credential_epoch, u.credential_epoch + 1);
    assert!(s.users.set_roles(u.id, &["ops".to_owned()]).await.unwrap());
    let roles = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(roles.roles, ["ops"]);
    assert_eq!(roles.roles_epoch, u.roles_epoch + 1);
    assert!(s.users.set_disabled(u.id, true).await.unwrap());
    let disabled = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert!(disabled.disabled);
    assert_eq!(disabled.credential_epoch, changed.credential_epoch + 1);
    assert!(s.users.set_disabled(u.id, false).await.unwrap());
    let enabled = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert!(!enabled.disabled);
    assert_eq!(
        enabled.credential_epoch, disabled.credential_epoch,
        "enabling revives nothing"
    );
    let missing = UserId(987_654);
    assert!(!s.users.set_roles(missing, &[]).await.unwrap());
    assert!(!s.users.set_disabled(missing, true).await.unwrap());
    assert!(!s.users.set_password_hash(missing, "x", true).await.unwrap());
}

async fn profiles_are_kept_changed_and_cleared_without_touching_epochs(s: &Stores) {
    let u = s
        .users
        .create_user(NewUser {
            display_name: Some("Zoë Ōkubo".to_owned()),
            email: Some("zoe@example.com".to_owned()),
            ..new_user("zoe")
        })
        .await
        .unwrap();
    assert_eq!(u.display_name.as_deref(), Some("Zoë Ōkubo"));
    let found = s.users.user_by_key("zoe").await.unwrap().unwrap();
    assert_eq!(found.display_name.as_deref(), Some("Zoë Ōkubo"));
    assert_eq!(found.email.as_deref(), Some("zoe@example.com"));
    assert!(
        s.users
            .set_profile(u.id, Some("Zoe O."), None)
            .await
            .unwrap()
    );
    let changed = s.users.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(changed.display_name.as_deref(), Some("Zoe O."));
    assert_eq!(changed.email, None);
    assert_eq!(
        (changed.credential_epoch, changed.roles_epoch),
        (u.credential_epoch, u.roles_epoch),
        "a new name ends and rotates no session"
    );
    let listed = s.users.list_users().await.unwrap();
    assert_eq!(listed[0].display_name.as_deref(), Some("Zoe O."));
    let plain = s.users.create_user(new_user("ann")).await.unwrap();
    assert_eq!((plain.display_name, plain.email), (None, None));
    assert!(
        !s.users
            .set_profile(UserId(987_654), None, None)
            .await
            .unwrap()
    );
}

async fn every_password_hash_is_visited_once(s: &Stores) {
    let mut seen = Vec::new();
    s.users
        .each_password_hash(&mut |h| seen.push(h.to_owned()))
        .await
        .unwrap();
    assert!(seen.is_empty(), "no users, no hashes: {seen:?}");
    let hashes = ["$2b$04$one", "$argon2id$v=19$m=64,t=1,p=1$two", "three"];
    for (i, hash) in hashes.iter().enumerate() {
        s.users
            .create_user(NewUser {
                password_hash: (*hash).to_owned(),
                ..new_user(&format!("user{i}"))
            })
            .await
            .unwrap();
    }
    s.users
        .each_password_hash(&mut |h| seen.push(h.to_owned()))
        .await
        .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        ["$2b$04$one", "$argon2id$v=19$m=64,t=1,p=1$two", "three"]
    );
}

async fn removed_users_are_gone(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    assert!(s.users.remove_user(u.id).await.unwrap());
    assert!(!s.users.remove_user(u.id).await.unwrap());
    assert!(s.users.user_by_key("ann").await.unwrap().is_none());
    assert!(s.users.user_by_id(u.id).await.unwrap().is_none());
}

async fn sessions_round_trip_and_never_duplicate(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    let rec = session_for(u.id, 7, now_millis());
    s.sessions.create(&rec).await.unwrap();
    assert_eq!(s.sessions.load(&rec.key).await.unwrap().unwrap(), rec);
    assert!(matches!(
        s.sessions.create(&rec).await,
        Err(StoreError::Conflict)
    ));
    assert!(
        s.sessions
            .load(&SessionKey([8; 32]))
            .await
            .unwrap()
            .is_none()
    );
}

async fn touch_records_activity_but_never_resurrects(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    let t0 = now_millis();
    let rec = session_for(u.id, 1, t0);
    s.sessions.create(&rec).await.unwrap();
    assert!(s.sessions.touch(&rec.key, t0 + 5_000).await.unwrap());
    assert_eq!(
        s.sessions.load(&rec.key).await.unwrap().unwrap().last_seen,
        t0 + 5_000
    );
    assert!(
        s.sessions.touch(&rec.key, t0 + 4_000).await.unwrap(),
        "an older touch is harmless"
    );
    assert_eq!(
        s.sessions.load(&rec.key).await.unwrap().unwrap().last_seen,
        t0 + 5_000
    );
    // A request still in flight when its session is logged out must not bring it back.
    assert!(s.sessions.delete(&rec.key).await.unwrap());
    assert!(!s.sessions.touch(&rec.key, t0 + 6_000).await.unwrap());
    assert!(s.sessions.load(&rec.key).await.unwrap().is_none());
    assert!(!s.sessions.delete(&rec.key).await.unwrap());
}

async fn rotation_replaces_a_live_session_only(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    let t0 = now_millis();
    let old = session_for(u.id, 1, t0);
    s.sessions.create(&old).await.unwrap();
    let new = SessionRecord {
        key: SessionKey([2; 32]),
        roles_epoch: 1,
        last_seen: t0 + 2_000,
        ..old.clone()
    };
    assert!(s.sessions.rotate(&old.key, &new).await.unwrap());
    assert!(s.sessions.load(&old.key).await.unwrap().is_none());
    assert_eq!(s.sessions.load(&new.key).await.unwrap().unwrap(), new);
    // The old one is gone: rotating it again must not insert anything.
    let third = SessionRecord {
        key: SessionKey([3; 32]),
        ..new.clone()
    };
    assert!(!s.sessions.rotate(&old.key, &third).await.unwrap());
    assert!(s.sessions.load(&third.key).await.unwrap().is_none());
}

async fn concurrent_logout_and_activity_leave_the_session_deleted(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    for round in 0..20u8 {
        let rec = session_for(u.id, round, now_millis());
        s.sessions.create(&rec).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let sessions = s.sessions.clone();
            tasks
                .spawn(async move { sessions.touch(&rec.key, now_millis() + i).await.map(|_| ()) });
        }
        let sessions = s.sessions.clone();
        tasks.spawn(async move { sessions.delete(&rec.key).await.map(|_| ()) });
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert!(
            s.sessions.load(&rec.key).await.unwrap().is_none(),
            "round {round}"
        );
    }
}

/// Polls a store call `polls` times at most, then drops it wherever it is,
/// as a request does when its client goes away.
async fn abandon<T>(call: impl std::future::Future<Output = T>, polls: u8) {
    let mut call = std::pin::pin!(call);
    for _ in 0..polls {
        let step = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
        if step.is_ready() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// An abandoned rotation or revocation has happened entirely or not at all,
/// and holds nothing back: a transaction left open on a pooled connection
/// would keep every later write on it (a logout, a revocation) from ever
/// being committed.
async fn abandoned_writes_are_all_or_nothing_and_hold_nothing_back(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    let other = s.users.create_user(new_user("bob")).await.unwrap();
    let t0 = now_millis();
    let visible = |label: &'static str, round: u8, key: SessionKey| async move {
        assert!(
            s.sessions.load(&key).await.unwrap().is_some(),
            "round {round}: a write after an abandoned {label} is not visible"
        );
    };
    for round in 0..40u8 {
        let old = session_for(u.id, round, t0);
        s.sessions.create(&old).await.unwrap();
        let new = session_for(u.id, 64 + round, t0);
        abandon(s.sessions.rotate(&old.key, &new), round % 10).await;
        let probe = session_for(u.id, 128 + round, t0);
        s.sessions.create(&probe).await.unwrap();
        visible("rotation", round, probe.key).await;
        // A store may finish an abandoned call in the background: the two
        // reads below can straddle its commit, so the state must settle.
        let mut seen = Vec::new();
        let settled = loop {
            let state = (
                s.sessions.load(&old.key).await.unwrap().is_some(),
                s.sessions.load(&new.key).await.unwrap().is_some(),
            );
            seen.push(state);
            if state.0 != state.1 || seen.len() == 50 {
                break state.0 != state.1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(
            settled,
            "round {round}: (old session left, new one made) never became exactly one: {seen:?}"
        );

        abandon(s.sessions.delete_user_sessions(other.id), round % 10).await;
        let probe = session_for(u.id, 192 + round, t0);
        s.sessions.create(&probe).await.unwrap();
        visible("revocation", round, probe.key).await;
    }
}

async fn sessions_are_listed_and_revoked_per_user(s: &Stores) {
    let ann = s.users.create_user(new_user("ann")).await.unwrap();
    let bob = s.users.create_user(new_user("bob")).await.unwrap();
    let t0 = now_millis();
    s.sessions
        .create(&session_for(ann.id, 1, t0))
        .await
        .unwrap();
    s.sessions
        .create(&session_for(ann.id, 2, t0 + 1))
        .await
        .unwrap();
    s.sessions
        .create(&session_for(bob.id, 3, t0 + 2))
        .await
        .unwrap();
    assert_eq!(s.sessions.list(Some(ann.id)).await.unwrap().len(), 2);
    assert_eq!(s.sessions.list(None).await.unwrap().len(), 3);
    assert_eq!(s.sessions.delete_user_sessions(ann.id).await.unwrap(), 2);
    let left = s.sessions.list(None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].user_id, bob.id);
    assert!(
        s.sessions
            .load(&SessionKey([1; 32]))
            .await
            .unwrap()
            .is_none()
    );
}

async fn expired_sessions_are_deleted_by_either_timeout(s: &Stores) {
    let u = s.users.create_user(new_user("ann")).await.unwrap();
    let t0 = now_millis();
    let idle = SessionRecord {
        last_seen: t0 - 2 * HOUR,
        ..session_for(u.id, 1, t0 - 3 * HOUR)
    };
    let old = SessionRecord {
        created_at: t0 - 24 * HOUR,
        ..session_for(u.id, 2, t0)
    };
    let fresh = session_for(u.id, 3, t0);
    for r in [&idle, &old, &fresh] {
        s.sessions.create(r).await.unwrap();
    }
    let deleted = s
        .sessions
        .delete_expired(t0 - HOUR, t0 - 12 * HOUR)
        .await
        .unwrap();
    assert!(deleted <= 2, "{deleted}");
    assert_eq!(s.sessions.list(None).await.unwrap(), [fresh]);
    assert!(s.sessions.load(&idle.key).await.unwrap().is_none());
    assert!(s.sessions.load(&old.key).await.unwrap().is_none());
}

/// Begins an attempt at `at` and fails it; the lock it leaves, if any.
async fn failed_attempt(s: &Stores, key: &str, at: i64) -> Option<i64> {
    assert_eq!(
        s.failures.begin_attempt(key, at, POLICY).await.unwrap(),
        latchkey::store::Attempt::Allowed
    );
    s.failures.fail(key, at, POLICY).await.unwrap()
}

async fn attempts_lock_at_the_limit_and_unlock_later(s: &Stores) {
    use latchkey::store::Attempt::{Allowed, Locked};
    let f = &s.failures;
    let t = now_millis();
    assert_eq!(f.locked_until("account:ann", t).await.unwrap(), None);
    assert_eq!(failed_attempt(s, "account:ann", t + 1_000).await, None);
    assert_eq!(failed_attempt(s, "account:ann", t + 2_000).await, None);
    // The failure that reaches the limit locks, from its own time.
    assert_eq!(
        failed_attempt(s, "account:ann", t + 3_000).await,
        Some(t + 8_000)
    );
    assert_eq!(
        f.locked_until("account:ann", t + 3_001).await.unwrap(),
        Some(t + 8_000)
    );
    // Attempts while locked are refused and do not extend the lock.
    for at in [t + 4_000, t + 4_500] {
        assert_eq!(
            f.begin_attempt("account:ann", at, POLICY).await.unwrap(),
            Locked(t + 8_000)
        );
    }
    assert_eq!(
        f.fail("account:ann", t + 4_600, POLICY).await.unwrap(),
        Some(t + 8_000),
        "a failure while locked keeps the lock as it is"
    );
    assert_eq!(
        f.locked_until("account:ann", t + 8_000).await.unwrap(),
        None
    );
    // After the lock a new window starts.
    assert_eq!(
        f.begin_attempt("account:ann", t + 9_000, POLICY)
            .await
            .unwrap(),
        Allowed
    );
    assert_eq!(
        f.locked_until("account:bob", t + 3_001).await.unwrap(),
        None,
        "keys are separate"
    );
}

async fn attempts_outside_the_window_are_forgotten(s: &Stores) {
    use latchkey::store::Attempt::Locked;
    let f = &s.failures;
    let t = now_millis();
    failed_attempt(s, "ip:1", t).await;
    failed_attempt(s, "ip:1", t + 1_000).await;
    assert_eq!(failed_attempt(s, "ip:1", t + 20_000).await, None);
    assert_eq!(failed_attempt(s, "ip:1", t + 21_000).await, None);
    assert_eq!(
        failed_attempt(s, "ip:1", t + 22_000).await,
        Some(t + 27_000)
    );
    assert_eq!(
        f.begin_attempt("ip:1", t + 22_500, POLICY).await.unwrap(),
        Locked(t + 27_000)
    );
    f.clear("ip:1").await.unwrap();
    assert_eq!(f.locked_until("ip:1", t + 23_000).await.unwrap(), None);
    failed_attempt(s, "ip:2", t - 60_000).await;
    f.delete_stale(t, 10_000).await.unwrap();
    failed_attempt(s, "ip:2", t).await;
    assert_eq!(
        failed_attempt(s, "ip:2", t + 1).await,
        None,
        "a stale count starts over"
    );
}

async fn a_forgiven_attempt_no_longer_counts(s: &Stores) {
    use latchkey::store::Attempt::{Allowed, Busy, Locked};
    let f = &s.failures;
    let t = now_millis();
    failed_attempt(s, "ip:9", t).await;
    failed_attempt(s, "ip:9", t + 1).await;
    // The third is in flight: the limit is reached, but not by failures.
    assert_eq!(
        f.begin_attempt("ip:9", t + 2, POLICY).await.unwrap(),
        Allowed
    );
    assert_eq!(f.locked_until("ip:9", t + 3).await.unwrap(), None);
    for i in 0..5 {
        assert_eq!(
            f.begin_attempt("ip:9", t + 3 + i, POLICY).await.unwrap(),
            Busy,
            "others wait for it, uncounted"
        );
    }
    // It was a success: taking it back makes room for one more.
    f.forgive("ip:9", POLICY).await.unwrap();
    assert_eq!(
        f.begin_attempt("ip:9", t + 9, POLICY).await.unwrap(),
        Allowed
    );
    assert_eq!(
        f.fail("ip:9", t + 10, POLICY).await.unwrap(),
        Some(t + 5_010)
    );
    // A success settled after the lock takes its attempt back and unlocks:
    // the failures alone are below the limit again.
    f.forgive("ip:9", POLICY).await.unwrap();
    assert_eq!(f.locked_until("ip:9", t + 11).await.unwrap(), None);
    assert_eq!(
        f.begin_attempt("ip:9", t + 12, POLICY).await.unwrap(),
        Allowed
    );
    assert!(f.fail("ip:9", t + 12, POLICY).await.unwrap().is_some());
    assert!(matches!(
        f.begin_attempt("ip:9", t + 13, POLICY).await.unwrap(),
        Locked(_)
    ));
    f.forgive("ip:unknown", POLICY).await.unwrap();
    assert_eq!(f.fail("ip:unknown", t, POLICY).await.unwrap(), None);
    // An attempt taken back, with nothing else counted, leaves no counter.
    assert_eq!(f.begin_attempt("ip:10", t, POLICY).await.unwrap(), Allowed);
    f.forgive("ip:10", POLICY).await.unwrap();
    assert_eq!(f.clear_prefix("ip:10").await.unwrap(), 0, "no row is left");
}

async fn clearing_by_prefix_takes_the_prefix_literally(s: &Stores) {
    let f = &s.failures;
    let t = now_millis();
    let keys = [
        "account:ann",
        "account:ann\u{1f}device:abc",
        "account:ann\u{1f}device:def",
        "account:annabel",
    ];
    for key in keys {
        for i in 0..3 {
            failed_attempt(s, key, t + i).await;
        }
        assert!(f.locked_until(key, t + 3).await.unwrap().is_some(), "{key}");
    }
    for pattern in [
        "account:a%",
        "account:a*",
        "account:_nn",
        "account:?nn",
        "[a]",
    ] {
        assert_eq!(f.clear_prefix(pattern).await.unwrap(), 0, "{pattern}");
    }
    assert_eq!(f.clear_prefix("account:ann\u{1f}device:").await.unwrap(), 2);
    for (key, locked) in keys.into_iter().zip([true, false, false, true]) {
        assert_eq!(
            f.locked_until(key, t + 3).await.unwrap().is_some(),
            locked,
            "{key}"
        );
    }
}

async fn parallel_attempts_cannot_exceed_the_limit(s: &Stores) {
    let policy = FailurePolicy {
        max_failures: 5,
        window: 60_000,
        lockout: 60_000,
    };
    let now = now_millis();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let failures = s.failures.clone();
        tasks.spawn(async move { failures.begin_attempt("account:race", now, policy).await });
    }
    let mut allowed = 0;
    while let Some(done) = tasks.join_next().await {
        let attempt = done.unwrap().unwrap();
        assert!(
            !matches!(attempt, latchkey::store::Attempt::Locked(_)),
            "attempts in flight are not failures: nothing is locked"
        );
        allowed += usize::from(attempt == latchkey::store::Attempt::Allowed);
    }
    assert_eq!(
        allowed, 5,
        "exactly the limit gets through, however parallel"
    );
}

async fn stores_answer_pings(s: &Stores) {
    s.users.ping().await.unwrap();
    s.sessions.ping().await.unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let f = super::StoreFixture::memory();
                    super::$case(&f.stores).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let f = super::StoreFixture::sqlite().await;
                    super::$case(&f.stores).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(f) = super::StoreFixture::redis().await else { return };
                    super::$case(&f.stores).await;
                    f.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(f) = super::StoreFixture::postgres().await else { return };
                    super::$case(&f.stores).await;
                    f.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    users_are_unique_by_key_and_round_trip,
    user_changes_bump_the_right_epochs,
    profiles_are_kept_changed_and_cleared_without_touching_epochs,
    every_password_hash_is_visited_once,
    removed_users_are_gone,
    sessions_round_trip_and_never_duplicate,
    touch_records_activity_but_never_resurrects,
    rotation_replaces_a_live_session_only,
    concurrent_logout_and_activity_leave_the_session_deleted,
    abandoned_writes_are_all_or_nothing_and_hold_nothing_back,
    sessions_are_listed_and_revoked_per_user,
    expired_sessions_are_deleted_by_either_timeout,
    attempts_lock_at_the_limit_and_unlock_later,
    attempts_outside_the_window_are_forgotten,
    a_forgiven_attempt_no_longer_counts,
    parallel_attempts_cannot_exceed_the_limit,
    clearing_by_prefix_takes_the_prefix_literally,
    stores_answer_pings,
);
