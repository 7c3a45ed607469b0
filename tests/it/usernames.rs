//! User names by RFC 8265 (PRECIS `UsernameCaseMapped`): look-alike,
//! invisible and direction-flipping names are refused wherever an account
//! is made, with a message that says why, and names stored before these
//! rules still sign in.

use crate::common;

use common::{PASSWORD, TestApp, base_env, run_cli, stderr, stdout};
use reqwest::StatusCode;
use serde_json::Value;

/// Names that can pass for another, and what the refusal says.
const REFUSED: [(&str, &str); 9] = [
    // A Cyrillic "а" in a Latin name.
    ("\u{430}lice", "mixes letters of different scripts"),
    ("p\u{430}yp\u{430}l", "mixes letters of different scripts"),
    ("ali\u{200B}ce", "invisible characters such as zero-width"),
    ("ali\u{200D}ce", "invisible characters such as zero-width"),
    ("\u{2066}admin", "(found U+2066)"),
    ("e\u{202E}vil", "(found U+202E)"),
    ("adm\u{FE0F}in", "(found U+FE0F)"),
    ("a\u{5D0}", "right-to-left and left-to-right"),
    ("\u{2665}love", "may not contain"),
];

#[tokio::test]
async fn the_cli_refuses_look_alike_invisible_and_bidi_names_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&dir);
    common::add_user(&env, "mary", PASSWORD, &[]).await;
    common::add_user(&env, "popa", PASSWORD, &[]).await;
    common::add_user(&env, "alice", PASSWORD, &[]).await;
    common::add_user(&env, "bob", PASSWORD, &[]).await;
    common::add_user(&env, "will", PASSWORD, &[]).await;
    let looks_like = [
        ("rnary", "looks too much like the existing user \"mary\""),
        // A capital I, a zero, two v's: as shown they read as the others.
        ("aIice", "looks too much like the existing user \"alice\""),
        ("b0b", "looks too much like the existing user \"bob\""),
        ("vvill", "looks too much like the existing user \"will\""),
        // All Cyrillic (one script), yet it reads as the existing "popa".
        (
            "\u{440}\u{43e}\u{440}\u{430}",
            "looks too much like the existing user \"popa\"",
        ),
        ("MARY", "already exists"),
    ];
    for (name, needle) in REFUSED.iter().chain(&looks_like) {
        let out = run_cli(
            &env,
            &["user", "add", name, "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
        assert!(!out.status.success(), "{name:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(needle), "{name:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name:?}: one line: {err}");
        assert_eq!(err.matches(needle).count(), 1, "{name:?}: said once: {err}");
    }
    let out = run_cli(&env, &["user", "list", "--json"], None).await;
    let users: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["alice", "bob", "mary", "popa", "will"],
        "nothing was created"
    );
    // Names in one script, with ASCII punctuation, are welcome.
    for name in [
        "Zo\u{eb}",
        "\u{438}\u{432}\u{430}\u{43d}",
        "ann+work@example.com",
    ] {
        common::add_user(&env, name, PASSWORD, &[]).await;
    }
}

/// The setup form's hidden fields: (token, CSRF token).
async fn setup_form(app: &TestApp) -> (String, String) {
    let link = app.setup_link.clone().unwrap();
    let path = &link[link.find("/setup").unwrap()..];
    let html = app.get(path).await.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = html[start..].split('"').next().unwrap().to_owned();
    (path.trim_start_matches("/setup?token=").to_owned(), csrf)
}

#[tokio::test]
async fn the_setup_page_refuses_such_names_in_forms_and_json_and_keeps_its_link() {
    let app = TestApp::spawn().await;
    let (token, csrf) = setup_form(&app).await;
    let fields = |name: &str| {
        serde_json::json!({
            "token": token,
            "csrf_token": csrf,
            "username": name,
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        })
    };
    for (name, needle) in REFUSED {
        let form = fields(name);
        let pairs: Vec<(&str, &str)> = form
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let as_form = app.post_form("/setup", &pairs).await;
        let as_json = app
            .request(reqwest::Method::POST, "/setup")
            .json(&form)
            .send()
            .await
            .unwrap();
        for (how, r) in [("form", as_form), ("JSON", as_json)] {
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{name:?} as {how}"
            );
            let page = r.text().await.unwrap();
            assert!(page.contains(needle), "{name:?} as {how}: {page}");
            let field = page
                .lines()
                .find(|l| l.contains("id=\"username\""))
                .unwrap();
            assert!(
                field.contains("aria-invalid=\"true\""),
                "{name:?} as {how}: the name field is marked: {field}"
            );
        }
    }
    assert!(
        !app.auth.accounts().any_users().await.unwrap(),
        "nothing was created"
    );
    // The link still works for a name that is fine.
    let r = app
        .post_form(
            "/setup",
            &[
                ("token", token.as_str()),
                ("csrf_token", csrf.as_str()),
                ("username", "Zo\u{eb}"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn names_stored_before_the_precis_rules_still_sign_in() {
    let app = TestApp::spawn().await;
    let password = latchkey::Password::new(PASSWORD.to_owned());
    let hash = app.auth.hasher().hash(&password).await.unwrap();
    // As the rules before PRECIS stored them: display name and key_of.
    let old_names = [
        "\u{430}lice",
        "ali\u{200B}ce",
        "\u{2665}love",
        // Its old key has a final sigma (σας); a new ΣΑΣ would be σασ.
        "\u{3a3}\u{391}\u{3a3}",
    ];
    let planted: Vec<_> = old_names.iter().map(|n| (*n, hash.clone())).collect();
    common::plant_users(&app.db_path(), &planted).await;
    for name in old_names {
        let (client, _) = common::client();
        let r = client
            .post(app.url("/login"))
            .json(&serde_json::json!({ "username": name, "password": PASSWORD }))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name:?}");
    }
    // The administrative commands find them too; and PRECIS's form of the
    // old Greek name is that very name, so it is taken.
    let (old_greek, new_greek) = ("\u{3a3}\u{391}\u{3a3}", "\u{3c3}\u{3b1}\u{3c3}");
    let passwd = ["user", "passwd", old_greek, "--password-stdin"];
    let out = app.cli(&passwd, Some(common::OTHER_PASSWORD)).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let new_password = app.login_json(old_greek, common::OTHER_PASSWORD).await;
    assert_eq!(new_password.status(), StatusCode::OK);
    let add = ["user", "add", new_greek, "--password-stdin"];
    let taken = stderr(&app.cli(&add, Some(PASSWORD)).await);
    assert!(taken.contains("already exists"), "{taken}");
}
