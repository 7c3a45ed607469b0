//! `examples/own_users.rs` run as a real process: an app whose users live
//! in its own table, signed in by latchkey. What the app changes in its
//! table holds at the user's next request.

use reqwest::{StatusCode, header};

use crate::common::{PASSWORD, client, sign_in_by_form};
use crate::embed::{Example, start_example};

async fn start() -> Example {
    let dir = tempfile::tempdir().unwrap();
    start_example("own_users", dir, &[("ANN_PASSWORD", PASSWORD)]).await
}

/// Runs one statement on the app's own table, as the app (or its admin) would.
async fn change_members(app: &Example, sql: &'static str) {
    let url = format!("sqlite://{}", app.dir.path().join("members.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let done = sqlx::query(sql).execute(&pool).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
    pool.close().await;
}

async fn status(client: &reqwest::Client, app: &Example, path: &str) -> StatusCode {
    client
        .get(format!("{}{path}", app.base))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_member_of_the_apps_own_table_signs_in_and_the_apps_changes_hold_at_the_next_request() {
    let app = start().await;
    let (client, _) = client();
    sign_in_by_form(&client, &app.base, "/login", "Ann", "/").await;
    let home = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(home.text().await.unwrap(), "hello ann");
    assert_eq!(status(&client, &app, "/admin").await, StatusCode::FORBIDDEN);

    change_members(
        &app,
        "UPDATE members SET roles = 'admin' WHERE name = 'ann'",
    )
    .await;
    assert_eq!(status(&client, &app, "/admin").await, StatusCode::OK);

    change_members(&app, "UPDATE members SET disabled = 1 WHERE name = 'ann'").await;
    assert_eq!(status(&client, &app, "/").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_apps_member_with_a_wrong_password_or_an_unknown_name_is_refused_alike() {
    let app = start().await;
    let (client, _) = client();
    for (name, password) in [("ann", "wrong-password-here"), ("nobody", PASSWORD)] {
        let r = client
            .post(format!("{}/login", app.base))
            .header(header::ORIGIN, &app.base)
            .json(&serde_json::json!({ "username": name, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_credentials", "{name}: {body}");
    }
    assert_eq!(status(&client, &app, "/").await, StatusCode::UNAUTHORIZED);
}
