//! A client without a key cannot grow the database: its refused attempts become one row per
//! source and period, however many it makes, while metrics count every one.

use reqwest::{Client, StatusCode};
use smai_e2e::TestServer;

#[tokio::test]
async fn many_refused_attempts_are_one_row_per_source() {
    let t = TestServer::start().await;
    let client = Client::new();
    for i in 0..300 {
        let key = if i % 2 == 0 { "nope".to_owned() } else { smai_auth::ApiKey::generate().as_str().to_owned() };
        let response = client.get(t.url("/v1/models")).header("x-api-key", key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let metrics = client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("smai_auth_rejections_total{") && l.contains("status=\"401\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 300.0, "metrics count every attempt");

    let TestServer { server, db, dir: _dir, .. } = t;
    server.shutdown().await.unwrap();
    let pool = smai_auth::open_database(&db).await.unwrap();
    let usage: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM usage_log").fetch_one(&pool).await.unwrap();
    assert_eq!(usage.0, 0, "no per-request rows for refusals");
    let refusals: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, attempts FROM auth_refusals").fetch_all(&pool).await.unwrap();
    assert_eq!(refusals, [("127.0.0.1".to_owned(), 300)]);
    pool.close().await;
}
