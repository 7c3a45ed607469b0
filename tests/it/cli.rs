//! The `latchkey` command line, run as a real process.

use crate::common;

use common::{OTHER_PASSWORD, PASSWORD, base_env, run_cli, stderr, stdout};
use serde_json::Value;

fn env() -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&dir);
    (dir, env)
}

#[tokio::test]
async fn every_command_has_help() {
    let (_dir, env) = env();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "passwd", "--help"],
        vec!["user", "roles", "--help"],
        vec!["user", "disable", "--help"],
        vec!["user", "enable", "--help"],
        vec!["user", "remove", "--help"],
        vec!["session", "--help"],
        vec!["session", "list", "--help"],
        vec!["session", "revoke", "--help"],
    ] {
        let out = run_cli(&env, &args, None).await;
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

#[tokio::test]
async fn user_commands_create_the_database_and_manage_users() {
    let (dir, env) = env();
    assert!(!dir.path().join("latchkey.db").exists());
    let out = run_cli(
        &env,
        &[
            "user",
            "add",
            "Ann",
            "--role",
            "admin",
            "--role",
            "ops",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        dir.path().join("latchkey.db").exists(),
        "the database is created on first use"
    );
    let out = run_cli(&env, &["user", "list", "--json"], None).await;
    let users: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(users[0]["username"], "Ann");
    assert_eq!(users[0]["roles"], serde_json::json!(["admin", "ops"]));
    assert_eq!(users[0]["disabled"], false);
    assert!(!stdout(&out).contains("argon2"), "no hashes in listings");
    let out = run_cli(
        &env,
        &["user", "roles", "ann", "--remove", "ops", "--add", "audit"],
        None,
    )
    .await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("admin,audit"));
    assert_eq!(
        stderr(&out),
        "",
        "the result goes to standard output, and nothing else is printed unless asked"
    );
    let out = run_cli(&env, &["-v", "user", "roles", "ann", "--add", "ops"], None).await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("admin,audit,ops"));
    let err = stderr(&out);
    assert!(
        err.contains("latchkey::audit"),
        "--verbose shows the audit trail: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes when standard error is not a terminal: {err:?}"
    );
    let out = run_cli(&env, &["user", "roles", "ann", "--remove", "ops"], None).await;
    assert!(out.status.success());
    let out = run_cli(&env, &["user", "disable", "ANN"], None).await;
    assert!(out.status.success());
    let table = stdout(&run_cli(&env, &["user", "list"], None).await);
    assert!(
        table.contains("USERNAME") && table.contains("disabled"),
        "{table}"
    );
    assert!(
        run_cli(&env, &["user", "enable", "ann"], None)
            .await
            .status
            .success()
    );
    let out = run_cli(
        &env,
        &["user", "passwd", "ann", "--password-stdin"],
        Some(OTHER_PASSWORD),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        run_cli(&env, &["user", "remove", "ann"], None)
            .await
            .status
            .success()
    );
    let users: Value = serde_json::from_str(&stdout(
        &run_cli(&env, &["user", "list", "--json"], None).await,
    ))
    .unwrap();
    assert_eq!(users, serde_json::json!([]));
}

#[tokio::test]
async fn mistakes_get_one_clear_line_and_a_failing_exit() {
    let (_dir, env) = env();
    common::add_user(&env, "ann", PASSWORD, &[]).await;
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec!["user", "add", "ANN", "--password-stdin"],
            Some(PASSWORD),
            "already exists",
        ),
        (
            vec!["user", "add", "bob", "--password-stdin"],
            Some("password"),
            "password refused",
        ),
        (
            vec!["user", "add", "bob", "--password-stdin"],
            Some("bob12345"),
            "too easy to guess",
        ),
        (
            vec!["user", "add", "b o b", "--password-stdin"],
            Some(PASSWORD),
            "invalid username",
        ),
        (
            vec!["user", "add", "bob", "--role", "a b", "--password-stdin"],
            Some(PASSWORD),
            "invalid role",
        ),
        (vec!["user", "add", "bob"], None, "--password-stdin"),
        (
            vec!["user", "passwd", "nobody", "--password-stdin"],
            Some(PASSWORD),
            "no user named",
        ),
        (vec!["user", "disable", "nobody"], None, "no user named"),
        (vec!["user", "remove", "nobody"], None, "no user named"),
        (vec!["user", "roles", "ann"], None, "nothing to change"),
        (
            vec!["session", "revoke", "--user", "nobody"],
            None,
            "no user named",
        ),
        (
            vec!["session", "list", "--user", "nobody"],
            None,
            "no user named",
        ),
    ];
    for (args, stdin, needle) in cases {
        let out = run_cli(&env, &args, stdin).await;
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert_eq!(
            err.matches(needle).count(),
            1,
            "{args:?}: the cause is said once: {err}"
        );
        assert!(!err.contains(PASSWORD), "never echo a password");
    }
    let out = run_cli(&env, &["user", "frobnicate"], None).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_bad_setting_stops_the_command_and_names_itself() {
    let (_dir, mut env) = env();
    env.push(("LATCHKEY_IDLE_TIMEOUT".into(), "soon".into()));
    let out = run_cli(&env, &["user", "list"], None).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("LATCHKEY_IDLE_TIMEOUT"),
        "{}",
        stderr(&out)
    );
    let (_dir, mut env) = self::env();
    env.push((
        "LATCHKEY_PUBLIC_URL".into(),
        "http://login.example.com".into(),
    ));
    let out = run_cli(&env, &["serve"], None).await;
    assert!(
        !out.status.success(),
        "a non-loopback http URL refuses to start"
    );
    assert!(
        stderr(&out).contains("LATCHKEY_PUBLIC_URL"),
        "{}",
        stderr(&out)
    );
    let (_dir, mut env) = self::env();
    env.retain(|(k, _)| k != "LATCHKEY_SECRET");
    env.push(("LATCHKEY_SECRET".into(), "short".into()));
    let out = run_cli(&env, &["serve"], None).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("at least 32 bytes"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("short\""),
        "the secret is not echoed"
    );
}

#[tokio::test]
async fn a_config_file_is_read_and_the_environment_wins() {
    let (dir, mut env) = env();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(
        &file,
        "argon2_memory_kib = 2048\nidle_timeout = \"bogus\"\n",
    )
    .unwrap();
    let out = run_cli(
        &env,
        &["--config", file.to_str().unwrap(), "user", "list"],
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("idle_timeout"), "{}", stderr(&out));
    env.push(("LATCHKEY_IDLE_TIMEOUT".into(), "5m".into()));
    env.retain(|(k, _)| k != "LATCHKEY_ARGON2_MEMORY_KIB");
    let out = run_cli(
        &env,
        &[
            "--config",
            file.to_str().unwrap(),
            "user",
            "add",
            "ann",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stores = latchkey::store::Stores::open(&format!(
        "sqlite://{}",
        dir.path().join("latchkey.db").display()
    ))
    .await
    .unwrap();
    let hash = stores
        .users
        .user_by_key("ann")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(
        hash.starts_with("$argon2id$v=19$m=2048,t=1,p=1$"),
        "the file's argon2 cost applies: {hash}"
    );
}

#[tokio::test]
async fn sessions_are_listed_without_tokens() {
    let app = common::TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let cookie = app.session_cookie().unwrap();
    let out = app.cli(&["session", "list", "--user", "ann"], None).await;
    let text = stdout(&out);
    assert!(text.contains("SESSION") && text.contains("ann"), "{text}");
    let token_part = cookie.split('.').next().unwrap();
    assert!(!text.contains(&token_part[..12]), "no token in the listing");
}

/// Runs the CLI on a pseudo-terminal (util-linux `script`), typing `input`.
async fn run_on_terminal(
    env: &[(String, String)],
    command: &str,
    input: &str,
) -> Option<std::process::Output> {
    use tokio::io::AsyncWriteExt as _;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: terminal prompt test: no `script` command\n",
        );
        return None;
    }
    let line = format!("{} {command}", env!("CARGO_BIN_EXE_latchkey"));
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    Some(child.wait_with_output().await.unwrap())
}

#[tokio::test]
async fn without_password_stdin_the_password_is_asked_twice_on_a_terminal() {
    let (_dir, env) = env();
    let Some(out) =
        run_on_terminal(&env, "user add ann", &format!("{PASSWORD}\n{PASSWORD}\n")).await
    else {
        return;
    };
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Password: ") && text.contains("Password again: "),
        "{text}"
    );
    let users: Value = serde_json::from_str(&stdout(
        &run_cli(&env, &["user", "list", "--json"], None).await,
    ))
    .unwrap();
    assert_eq!(users[0]["username"], "ann");
    let Some(out) = run_on_terminal(
        &env,
        "user passwd ann",
        &format!("{PASSWORD}\n{OTHER_PASSWORD}\n"),
    )
    .await
    else {
        return;
    };
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("the passwords differ"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_dozen_bad_configurations_each_get_one_line_naming_the_setting_and_the_cause_once() {
    let repeated = "ab".repeat(20);
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "LATCHKEY_DATABASE_URL",
            "mysql://db/latchkey",
            &["LATCHKEY_DATABASE_URL", "unknown database URL scheme"],
        ),
        (
            "LATCHKEY_DATABASE_URL",
            "sqlite:///no/such/dir/x.db",
            &["sqlite:///no/such/dir/x.db", "unable to open database file"],
        ),
        (
            "LATCHKEY_SESSION_STORE_URL",
            "redis://127.0.0.1:1/",
            &["Redis", "connection refused"],
        ),
        (
            "LATCHKEY_SESSION_STORE_URL",
            "ftp://cache",
            &["LATCHKEY_SESSION_STORE_URL", "redis://"],
        ),
        (
            "LATCHKEY_SECRET_FILE",
            "/no/such/secret",
            &["/no/such/secret", "No such file or directory"],
        ),
        (
            "LATCHKEY_IDLE_TIMEOUT",
            "soon",
            &["LATCHKEY_IDLE_TIMEOUT", "not a duration"],
        ),
        (
            "LATCHKEY_BIND",
            "nope",
            &["LATCHKEY_BIND", "not an address"],
        ),
        (
            "LATCHKEY_PUBLIC_URL",
            "ftp://x",
            &["LATCHKEY_PUBLIC_URL", "not http or https"],
        ),
        (
            "LATCHKEY_ARGON2_MEMORY_KIB",
            "lots",
            &["LATCHKEY_ARGON2_MEMORY_KIB", "not a whole number"],
        ),
        (
            "LATCHKEY_SAME_SITE",
            "none",
            &["LATCHKEY_SAME_SITE", "not lax or strict"],
        ),
        (
            "LATCHKEY_TRUSTED_PROXIES",
            "10.0.0.0/99",
            &["LATCHKEY_TRUSTED_PROXIES", "not an IP address"],
        ),
        (
            "LATCHKEY_LOGIN_RATE",
            "0",
            &["LATCHKEY_LOGIN_RATE", "at least 1"],
        ),
        ("LATCHKEY_LOG_FORMAT", "xml", &["LATCHKEY_LOG_FORMAT"]),
        (
            "LATCHKEY_SECRET",
            &repeated,
            &["LATCHKEY_SECRET", "only 2 different characters"],
        ),
    ];
    for (name, value, needles) in cases {
        let (_dir, mut env) = env();
        // A secret given directly would win over a secret file.
        env.retain(|(k, _)| {
            k != name && !(*name == "LATCHKEY_SECRET_FILE" && k == "LATCHKEY_SECRET")
        });
        env.push(((*name).to_owned(), (*value).to_owned()));
        // `user add`: the one command besides `serve` that opens (and
        // would create) the database.
        let out = run_cli(
            &env,
            &["user", "add", "someone", "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}={value}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{name}={value}: one line: {err}"
        );
        for needle in *needles {
            assert_eq!(
                err.matches(needle).count(),
                1,
                "{name}={value}: {needle:?} said once: {err}"
            );
        }
        assert!(
            !err.contains(" { ") && !err.contains("Os {"),
            "{name}={value}: no Debug dump: {err}"
        );
    }
}

#[tokio::test]
async fn commands_other_than_user_add_do_not_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&dir);
    for args in [
        &["user", "list"][..],
        &["user", "unlock", "alice"],
        &["session", "list"],
    ] {
        let out = run_cli(&env, args, None).await;
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no database at"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(
        !dir.path().join("latchkey.db").exists(),
        "nothing was created"
    );
}
