//! Authentication cases: passwords, lookups, malformed rows.

use fogg_api::AuthDecision;
use fogg_auth_common::Scheme;

use crate::fixture::{AuthFixture, HashMethod, RawPassword, RawUser};
use crate::support::{
    Login, authenticate, build, build_default, connect, connect_refused, plain_acl, skip,
    unique_client_id, unique_mountpoint, unique_username, user,
};

/// For every hash method the backend declares: the right password is
/// allowed, wrong ones (another, empty, a prefix, different case) are denied.
pub async fn right_and_wrong_password_for_every_hash_method(f: &impl AuthFixture) {
    for method in f.features().hash_methods {
        let name = unique_username("passwords");
        let password = "Corr3ct horse: é";
        let mut u = user(f, &name, password);
        u.hash = method.clone();
        f.seed_user(&u).await;
        let backend = build(f, &method);
        let ok = Login::new(&name, password);
        connect(&backend, &ok).await;
        for wrong in [
            "wrong",
            "",
            "Corr3ct horse",
            "corr3ct horse: é",
            "Corr3ct horse: é ",
        ] {
            connect_refused(
                &backend,
                &Login::new(&name, wrong),
                AuthDecision::Deny,
                &format!("{method}: wrong password {wrong:?}"),
            )
            .await;
        }
    }
}

/// `$2a$`, `$2b$` and `$2y$` bcrypt hashes all verify (VerneMQ documents
/// `$2a$`; PHP writes `$2y$`).
pub async fn bcrypt_prefixes_2a_2b_2y(f: &impl AuthFixture) {
    let bcrypt = HashMethod::Broker(Scheme::Bcrypt);
    if !f.features().hash_methods.contains(&bcrypt) {
        return skip("bcrypt_prefixes_2a_2b_2y", "bcrypt checked by Fogg");
    }
    let hash = fogg_auth_common::passwords::hash_bcrypt(b"pw", 4)
        .unwrap_or_else(|e| panic!("bcrypt: {e}"));
    let mut names = Vec::new();
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        let name = unique_username("bcrypt");
        let stored = format!("{prefix}{}", &hash[4..]);
        f.seed_raw(&RawUser {
            mountpoint: String::new(),
            client_id: "*".to_owned(),
            username: name.clone(),
            password: RawPassword::Stored(stored),
            hash: bcrypt.clone(),
            publish_acl: None,
            subscribe_acl: None,
        })
        .await;
        names.push((prefix, name));
    }
    let backend = build(f, &bcrypt);
    for (prefix, name) in &names {
        let decision = authenticate(&backend, &Login::new(name, "pw")).await;
        assert!(
            matches!(decision, AuthDecision::Allow(_)),
            "{prefix}: {decision:?}"
        );
        connect_refused(
            &backend,
            &Login::new(name, "pW"),
            AuthDecision::Deny,
            prefix,
        )
        .await;
    }
}

/// A username with no row is "not mine": the next backend is asked.
pub async fn unknown_user_is_next(f: &impl AuthFixture) {
    let known = unique_username("known");
    f.seed_user(&user(f, &known, "pw")).await;
    let backend = build_default(f);
    let stranger = unique_username("stranger");
    connect_refused(
        &backend,
        &Login::new(&stranger, "pw"),
        AuthDecision::Next,
        "unknown user",
    )
    .await;
    // Usernames compare exactly.
    let upper = known.to_uppercase();
    connect_refused(
        &backend,
        &Login::new(&upper, "pw"),
        AuthDecision::Next,
        "other case",
    )
    .await;
}

/// Only CONNECTs with a username and a password can succeed through these
/// backends (VerneMQ's rule); the others are "not mine", so the broker's
/// `allow_anonymous` or another backend decides.
pub async fn connect_without_username_or_password_is_next(f: &impl AuthFixture) {
    let name = unique_username("nopass");
    f.seed_user(&user(f, &name, "pw")).await;
    let backend = build_default(f);
    let no_password = Login {
        password: None,
        ..Login::new(&name, "")
    };
    connect_refused(&backend, &no_password, AuthDecision::Next, "no password").await;
    let no_username = Login {
        username: None,
        ..Login::new(&name, "pw")
    };
    connect_refused(&backend, &no_username, AuthDecision::Next, "no username").await;
}

/// A stored user without a password is denied, whatever the client sends
/// (VerneMQ: the check against a NULL hash fails). Logged.
pub async fn stored_user_without_password_is_denied(f: &impl AuthFixture) {
    if !f.features().users_without_password {
        return skip(
            "stored_user_without_password_is_denied",
            "users without a password",
        );
    }
    let name = unique_username("nullpass");
    let mut u = user(f, &name, "unused");
    u.password = None;
    f.seed_user(&u).await;
    let backend = build_default(f);
    for attempt in ["", "unused", "null"] {
        connect_refused(
            &backend,
            &Login::new(&name, attempt),
            AuthDecision::Deny,
            "user stored without a password",
        )
        .await;
    }
}

/// A row with client id `*` serves every client of that username.
pub async fn any_client_id_row_matches_every_client(f: &impl AuthFixture) {
    if !f.features().client_ids {
        return skip("any_client_id_row_matches_every_client", "client-id rows");
    }
    let name = unique_username("anyclient");
    f.seed_user(&user(f, &name, "pw")).await;
    let backend = build_default(f);
    for client in [unique_client_id("a"), unique_client_id("b"), "*".to_owned()] {
        connect(&backend, &Login::new(&name, "pw").client_id(&client)).await;
    }
}

/// The exact (client id) row is looked up first and decides alone; the `*`
/// row serves the other clients. A wrong password on the exact row is a
/// denial even when it is the `*` row's password.
pub async fn exact_row_is_preferred_over_any_client_row(f: &impl AuthFixture) {
    if !f.features().client_ids {
        return skip(
            "exact_row_is_preferred_over_any_client_row",
            "client-id rows",
        );
    }
    let name = unique_username("exact");
    let device = unique_client_id("device");
    let mut exact = user(f, &name, "exact-pw");
    exact.client_id = device.clone();
    (exact.publish_acl, exact.subscribe_acl) = plain_acl(&["exact/#"], &["exact/#"]);
    let mut any = user(f, &name, "any-pw");
    (any.publish_acl, any.subscribe_acl) = plain_acl(&["any/#"], &["any/#"]);
    f.seed_user(&exact).await;
    f.seed_user(&any).await;
    let backend = build_default(f);

    let s = connect(&backend, &Login::new(&name, "exact-pw").client_id(&device)).await;
    assert!(
        s.may_publish("exact/x").await,
        "the exact row's ACL applies"
    );
    assert!(!s.may_publish("any/x").await, "the * row's ACL does not");
    assert!(s.may_subscribe("exact/#").await);
    assert!(!s.may_subscribe("any/#").await);

    let other = unique_client_id("other");
    let s = connect(&backend, &Login::new(&name, "any-pw").client_id(&other)).await;
    assert!(s.may_publish("any/x").await);
    assert!(!s.may_publish("exact/x").await);

    connect_refused(
        &backend,
        &Login::new(&name, "any-pw").client_id(&device),
        AuthDecision::Deny,
        "the exact row decides",
    )
    .await;
    connect_refused(
        &backend,
        &Login::new(&name, "exact-pw").client_id(&other),
        AuthDecision::Deny,
        "another client gets the * row",
    )
    .await;
}

/// The same username in two mountpoints is two users; a third mountpoint
/// does not know them.
pub async fn mountpoints_are_isolated(f: &impl AuthFixture) {
    if !f.features().mountpoints {
        return skip("mountpoints_are_isolated", "mountpoints");
    }
    let name = unique_username("mountpoints");
    let (m1, m2, m3) = (
        unique_mountpoint(),
        unique_mountpoint(),
        unique_mountpoint(),
    );
    let mut one = user(f, &name, "pw-one");
    one.mountpoint = m1.clone();
    (one.publish_acl, one.subscribe_acl) = plain_acl(&["one/#"], &[]);
    let mut two = user(f, &name, "pw-two");
    two.mountpoint = m2.clone();
    (two.publish_acl, two.subscribe_acl) = plain_acl(&["two/#"], &[]);
    f.seed_user(&one).await;
    f.seed_user(&two).await;
    let backend = build_default(f);

    let s = connect(&backend, &Login::new(&name, "pw-one").mountpoint(&m1)).await;
    assert!(s.may_publish("one/x").await);
    assert!(!s.may_publish("two/x").await);
    let s = connect(&backend, &Login::new(&name, "pw-two").mountpoint(&m2)).await;
    assert!(s.may_publish("two/x").await);
    assert!(!s.may_publish("one/x").await);
    connect_refused(
        &backend,
        &Login::new(&name, "pw-two").mountpoint(&m1),
        AuthDecision::Deny,
        "the other mountpoint's password",
    )
    .await;
    for elsewhere in [m3.as_str(), ""] {
        connect_refused(
            &backend,
            &Login::new(&name, "pw-one").mountpoint(elsewhere),
            AuthDecision::Next,
            "a mountpoint without the user",
        )
        .await;
    }
}

fn raw(f: &impl AuthFixture, name: &str, password: RawPassword) -> RawUser {
    RawUser {
        mountpoint: String::new(),
        client_id: "*".to_owned(),
        username: name.to_owned(),
        password,
        hash: f.features().default_method().clone(),
        publish_acl: None,
        subscribe_acl: None,
    }
}

/// A stored hash in no known format, or a known format with broken fields,
/// is logged and denied: never allowed, never a backend error, never a
/// panic. Other users keep working.
pub async fn unknown_or_malformed_hash_is_denied(f: &impl AuthFixture) {
    let stored = [
        "$9$unknown$format",
        "plain-text-password",
        "$2a$10$tooshort",
        "$6$rounds=x$salt$hash",
        "$7$0$AAAA$AAAA",
        "PBKDF2$md5$1000$AAAA$AAAA",
        "$argon2id$v=19$broken",
    ];
    let mut names = Vec::new();
    for hash in stored {
        let name = unique_username("badhash");
        f.seed_raw(&raw(f, &name, RawPassword::Stored(hash.to_owned())))
            .await;
        names.push((hash, name));
    }
    let good = unique_username("goodhash");
    f.seed_user(&user(f, &good, "pw")).await;
    let backend = build_default(f);
    for (hash, name) in &names {
        for attempt in ["pw", *hash] {
            connect_refused(
                &backend,
                &Login::new(name, attempt),
                AuthDecision::Deny,
                &format!("stored hash {hash:?}"),
            )
            .await;
        }
    }
    connect(&backend, &Login::new(&good, "pw")).await;
}

/// ACL text that is not JSON, not an array, or has an entry without a
/// pattern or with a wrong type refuses the CONNECT (logged), as VerneMQ's
/// failing `json.decode` does.
pub async fn malformed_acl_is_denied(f: &impl AuthFixture) {
    if !f.features().raw_acl {
        return skip("malformed_acl_is_denied", "ACLs stored as JSON text");
    }
    let cases: [(Option<&str>, Option<&str>); 7] = [
        (Some(r#"[{"pattern": "a"#), None),
        (None, Some("not json")),
        (Some(r#"{"pattern": "a"}"#), None),
        (Some(r#"[{"max_qos": 1}]"#), None),
        (None, Some(r#"[{"pattern": 7}]"#)),
        (Some(r#"[{"pattern": "a", "max_qos": "two"}]"#), None),
        (Some(r#"[{"pattern": "a/#/b"}]"#), None),
    ];
    let mut names = Vec::new();
    for (publish, subscribe) in cases {
        let name = unique_username("badacl");
        f.seed_raw(&RawUser {
            publish_acl: publish.map(str::to_owned),
            subscribe_acl: subscribe.map(str::to_owned),
            ..raw(f, &name, RawPassword::Plain("pw".to_owned()))
        })
        .await;
        names.push((publish, subscribe, name));
    }
    let backend = build_default(f);
    for (publish, subscribe, name) in &names {
        connect_refused(
            &backend,
            &Login::new(name, "pw"),
            AuthDecision::Deny,
            &format!("publish_acl {publish:?}, subscribe_acl {subscribe:?}"),
        )
        .await;
    }
}

/// Unknown keys in ACL entries are ignored (and logged); the known ones
/// still apply.
pub async fn unknown_acl_keys_are_ignored(f: &impl AuthFixture) {
    if !f.features().raw_acl {
        return skip("unknown_acl_keys_are_ignored", "ACLs stored as JSON text");
    }
    let name = unique_username("extrakeys");
    f.seed_raw(&RawUser {
        publish_acl: Some(r#"[{"pattern": "x/#", "colour": "blue", "priority": 3}]"#.to_owned()),
        subscribe_acl: Some(r#"[{"pattern": "y/#", "note": {"a": 1}}]"#.to_owned()),
        ..raw(f, &name, RawPassword::Plain("pw".to_owned()))
    })
    .await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    assert!(s.may_publish("x/1").await);
    assert!(!s.may_publish("y/1").await);
    assert!(s.may_subscribe("y/#").await);
    assert!(!s.may_subscribe("x/#").await);
}
