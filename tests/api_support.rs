//! Shared harness of the API tests (included by the other `api_*.rs` files with `#[path]`; as a
//! test target of its own it has no tests).
//!
//! [`each_backend`] runs one test body against the router over a fresh SQLite store in a
//! temporary folder, then, when `SELFPROV_TEST_POSTGRES_URL` is set (a role allowed to create
//! databases, see scripts/pg-test-env.sh), over a fresh PostgreSQL database made for the test
//! and dropped after it. Requests go through the router in-process (`tower::ServiceExt`).
#![allow(dead_code)]

#[path = "common/pg.rs"]
mod pg;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use selfprov::api::{router, ApiState};
use selfprov::store::Store;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::future::Future;
use tower::ServiceExt;

/// A PostgreSQL database made for one test.
pub struct PgDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create() -> Option<PgDb> {
        let admin_url = std::env::var("SELFPROV_TEST_POSTGRES_URL").ok()?;
        let name = format!(
            "selfprov_api_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to SELFPROV_TEST_POSTGRES_URL");
        // The name is made here of letters, digits and underscores: safe to splice.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        admin.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        Some(PgDb {
            admin_url,
            name,
            url,
        })
    }

    pub async fn drop_db(self) {
        pg::drop_database(&self.admin_url, &self.name).await;
    }
}

/// The API under test, with its store.
#[derive(Clone)]
pub struct Api {
    pub backend: &'static str,
    pub store: Store,
    pub router: Router,
    /// A token the store issued for this test.
    pub token: String,
}

/// A response: status, headers, body parsed as JSON (`Value::Null` for an empty body).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a JSON error naming `field` (or no field when `None`).
    #[track_caller]
    pub fn expect_error(self, status: u16, field: Option<&str>) -> Resp {
        let r = self.expect(status);
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "error responses are JSON: {}",
            r.text
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            r.text
        );
        assert_eq!(r.body["field"].as_str(), field, "field of {}", r.text);
        r
    }
}

impl Api {
    pub async fn new(backend: &'static str, store: Store) -> Api {
        let (_, token) = store.create_api_token("api tests").await.unwrap();
        Api {
            backend,
            router: router(ApiState::new(store.clone()).with_langpacks(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lang-packs"),
            )),
            store,
            token,
        }
    }

    /// A request with the test token.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token));
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(b.body(body).unwrap()).await
    }

    /// Any request, as built by the caller.
    pub async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
        };
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call("PUT", path, Some(body)).await
    }
    pub async fn put_empty(&self, path: &str) -> Resp {
        self.call("PUT", path, None).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None).await
    }

    /// A request with a raw body and content type, with the token.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: &str) -> Resp {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }
}

/// Runs `body` against each backend (SQLite always; PostgreSQL when configured).
pub async fn each_backend<F, Fut>(body: F)
where
    F: Fn(Api) -> Fut,
    Fut: Future<Output = ()>,
{
    {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("selfprov.db").display());
        let store = Store::open(&url).await.unwrap();
        body(Api::new("sqlite", store.clone()).await).await;
        store.close().await;
    }
    match PgDb::create().await {
        Some(db) => {
            let store = Store::open(&db.url).await.unwrap();
            body(Api::new("postgres", store.clone()).await).await;
            store.close().await;
            db.drop_db().await;
        }
        None => {
            // In CI a missing database is a failure, never a silent skip.
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "CI is set but SELFPROV_TEST_POSTGRES_URL is not: source scripts/pg-test-env.sh"
            );
            eprintln!("SELFPROV_TEST_POSTGRES_URL is not set: PostgreSQL run skipped (outside CI)");
        }
    }
}
