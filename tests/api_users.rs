//! API tests: authentication, error conventions, `/users` (CRUD, pagination, search, CSV
//! import), `/devices` and `/audit`, on every backend (see api_support.rs).

#[path = "api_support.rs"]
mod support;

use axum::body::Body;
use axum::http::Request;
use selfprov::provisioning::DeviceIdentity;
use selfprov::store::AuthMethod;
use serde_json::json;
use support::{each_backend, Api};

fn phone(mac: &str) -> DeviceIdentity {
    DeviceIdentity {
        mac: Some(mac.into()),
        device_name: Some(format!("SEP{mac}")),
        vendor: Some("Cisco".into()),
        model: Some("CP8851".into()),
        firmware: Some("14.2.1".into()),
        user_agent: Some("Cisco-CP8851/14.2.1".into()),
        sip_identity: "autoprov@pbx.example.com".into(),
        contact: None,
    }
}

async fn add_user(api: &Api, user_id: &str, extension: &str) -> serde_json::Value {
    api.post(
        "/api/v1/users",
        json!({"user_id": user_id, "extension": extension, "first_name": "Jane", "last_name": user_id}),
    )
    .await
    .expect(201)
    .body
}

#[tokio::test]
async fn every_protected_route_needs_a_valid_token() {
    each_backend(|api| async move {
        for (method, path) in [
            ("GET", "/api/v1/users"),
            ("POST", "/api/v1/users"),
            ("GET", "/api/v1/users/jdoe"),
            ("DELETE", "/api/v1/users/jdoe"),
            ("POST", "/api/v1/users/import"),
            ("GET", "/api/v1/devices"),
            ("GET", "/api/v1/devices/1"),
            ("GET", "/api/v1/audit"),
        ] {
            // No token at all.
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let r = api.send(req).await.expect_error(401, None);
            assert_eq!(
                r.headers.get("www-authenticate").unwrap(),
                "Bearer realm=\"selfprov\"",
                "{method} {path}"
            );
            // A wrong token, as Bearer and as X-Auth-Token.
            for (h, v) in [
                ("authorization", "Bearer not-the-token"),
                ("x-auth-token", "not-the-token"),
                ("authorization", "Basic dXNlcjpwYXNz"),
            ] {
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(h, v)
                    .body(Body::empty())
                    .unwrap();
                let r = api.send(req).await.expect_error(401, None);
                let challenge = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer realm=\"selfprov\", error="),
                    "{challenge}"
                );
            }
        }
        // Nothing was created by the refused POST.
        assert_eq!(api.get("/api/v1/users").await.expect(200).body["total"], 0);
        // The right token in Wazo's header works; so does a lower-case scheme.
        for (h, v) in [
            ("x-auth-token", api.token.clone()),
            ("authorization", format!("bearer {}", api.token)),
        ] {
            let req = Request::builder()
                .uri("/api/v1/users")
                .header(h, v)
                .body(Body::empty())
                .unwrap();
            api.send(req).await.expect(200);
        }
    })
    .await;
}

#[tokio::test]
async fn openapi_is_public_and_unknown_routes_are_json_404s() {
    each_backend(|api| async move {
        let req = Request::builder()
            .uri("/api/v1/openapi.json")
            .body(Body::empty())
            .unwrap();
        let r = api.send(req).await.expect(200);
        assert_eq!(r.body["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        // Unknown paths: 404 with or without a token, JSON either way.
        api.get("/api/v1/nope").await.expect_error(404, None);
        let req = Request::builder()
            .uri("/api/v1/nope")
            .body(Body::empty())
            .unwrap();
        api.send(req).await.expect_error(404, None);
        let req = Request::builder()
            .uri("/elsewhere")
            .body(Body::empty())
            .unwrap();
        api.send(req).await.expect_error(404, None);
        // A known path with a method it does not take: 405, JSON, with Allow.
        let r = api
            .call("PATCH", "/api/v1/users", None)
            .await
            .expect_error(405, None);
        let allow = r
            .headers
            .get("allow")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    })
    .await;
}

#[tokio::test]
async fn users_crud_and_conflicts() {
    each_backend(|api| async move {
        let r = api
            .post(
                "/api/v1/users",
                json!({"user_id": "jdoe", "selfprov_id": "4711", "first_name": "Jane",
                       "last_name": "Doe", "extension": "1001", "pin": "123456"}),
            )
            .await
            .expect(201);
        assert_eq!(r.body["user_id"], "jdoe");
        assert_eq!(r.body["selfprov_id"], "4711");
        assert_eq!(r.body["extension"], "1001");
        assert_eq!(r.body["has_pin"], true);
        assert_eq!(r.body["selfprov_enabled"], true);
        assert!(r.body.get("pin").is_none() && r.body.get("pin_hash").is_none());
        assert!(
            !r.text.contains("argon2") && !r.text.contains("123456"),
            "{}",
            r.text
        );

        // The PIN really is stored hashed (the IVR can check it).
        let stored = api.store.get_user("jdoe").await.unwrap().unwrap();
        assert!(selfprov::provisioning::secret::verify_secret(
            stored.pin_hash.as_deref().unwrap(),
            "123456"
        ));

        let r = api.get("/api/v1/users/jdoe").await.expect(200);
        assert_eq!(r.body["first_name"], "Jane");
        assert!(!r.text.contains("argon2"));

        // Conflicts name the field.
        api.post(
            "/api/v1/users",
            json!({"user_id": "jdoe", "extension": "1002"}),
        )
        .await
        .expect_error(409, Some("user_id"));
        api.post(
            "/api/v1/users",
            json!({"user_id": "asmith", "extension": "1001"}),
        )
        .await
        .expect_error(409, Some("extension"));
        api.post(
            "/api/v1/users",
            json!({"user_id": "asmith", "extension": "1002", "selfprov_id": "4711"}),
        )
        .await
        .expect_error(409, Some("selfprov_id"));
        // A self-provisioning ID equal to another user's user ID is ambiguous for the IVR.
        api.post(
            "/api/v1/users",
            json!({"user_id": "4712", "extension": "1003"}),
        )
        .await
        .expect(201);
        api.post(
            "/api/v1/users",
            json!({"user_id": "bob", "extension": "1004", "selfprov_id": "4712"}),
        )
        .await
        .expect_error(409, Some("selfprov_id"));

        // Bad values: 422 naming the field.
        api.post(
            "/api/v1/users",
            json!({"user_id": "x", "extension": "10a1"}),
        )
        .await
        .expect_error(422, Some("extension"));
        api.post(
            "/api/v1/users",
            json!({"user_id": "x", "extension": "1005", "pin": "12ab"}),
        )
        .await
        .expect_error(422, Some("pin"));
        api.post(
            "/api/v1/users",
            json!({"user_id": "has space", "extension": "1005"}),
        )
        .await
        .expect_error(422, Some("user_id"));
        // Wrong shape: missing, mistyped and unknown fields.
        api.post("/api/v1/users", json!({"user_id": "x"}))
            .await
            .expect_error(422, Some("extension"));
        api.post("/api/v1/users", json!({"user_id": "x", "extension": 1005}))
            .await
            .expect_error(422, Some("extension"));
        api.post(
            "/api/v1/users",
            json!({"user_id": "x", "extension": "1005", "colour": "red"}),
        )
        .await
        .expect_error(422, Some("colour"));
        // Not JSON: 400; not declared JSON: 415. Both JSON answers.
        api.raw(
            "POST",
            "/api/v1/users",
            "application/json",
            "{\"user_id\": \"x\",",
        )
        .await
        .expect_error(400, None);
        api.raw("POST", "/api/v1/users", "application/json", "")
            .await
            .expect_error(400, None);
        api.raw("POST", "/api/v1/users", "text/plain", "{}")
            .await
            .expect_error(415, None);
        // None of the refused requests created anything.
        assert_eq!(api.get("/api/v1/users").await.expect(200).body["total"], 2);

        // Delete, then 404s.
        api.delete("/api/v1/users/jdoe").await.expect(204);
        api.get("/api/v1/users/jdoe").await.expect_error(404, None);
        api.delete("/api/v1/users/jdoe")
            .await
            .expect_error(404, None);
        // The extension is free again.
        add_user(&api, "jdoe2", "1001").await;
    })
    .await;
}

#[tokio::test]
async fn users_pagination_order_and_search() {
    each_backend(|api| async move {
        for (u, e) in [
            ("carol", "1003"),
            ("alice", "1001"),
            ("bob", "1002"),
            ("dave", "2001"),
        ] {
            add_user(&api, u, e).await;
        }
        let ids = |v: &serde_json::Value| -> Vec<String> {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["user_id"].as_str().unwrap().to_string())
                .collect()
        };
        // Default: by user ID.
        let r = api.get("/api/v1/users").await.expect(200);
        assert_eq!(r.body["total"], 4);
        assert_eq!(ids(&r.body), ["alice", "bob", "carol", "dave"]);
        let r = api.get("/api/v1/users?order=id").await.expect(200);
        assert_eq!(ids(&r.body), ["carol", "alice", "bob", "dave"]);
        let r = api
            .get("/api/v1/users?order=user_id&direction=desc&limit=2&offset=1")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 4, "total counts every match, not the page");
        assert_eq!(ids(&r.body), ["carol", "bob"]);
        let r = api.get("/api/v1/users?offset=10").await.expect(200);
        assert_eq!(r.body["total"], 4);
        assert_eq!(ids(&r.body), Vec::<String>::new());
        // Search: case-insensitive substring over ID, names and extension.
        let r = api
            .get("/api/v1/users?search=100&order=extension")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 3);
        assert_eq!(ids(&r.body), ["alice", "bob", "carol"]);
        let r = api.get("/api/v1/users?search=DAV").await.expect(200);
        assert_eq!(ids(&r.body), ["dave"]);
        let r = api.get("/api/v1/users?search=zzz").await.expect(200);
        assert_eq!(r.body["total"], 0);
        // Bad parameters: 400 naming them.
        api.get("/api/v1/users?limit=-1")
            .await
            .expect_error(400, Some("limit"));
        api.get("/api/v1/users?limit=abc")
            .await
            .expect_error(400, Some("limit"));
        api.get("/api/v1/users?offset=x")
            .await
            .expect_error(400, Some("offset"));
        api.get("/api/v1/users?direction=up")
            .await
            .expect_error(400, Some("direction"));
        api.get("/api/v1/users?order=pin_hash")
            .await
            .expect_error(400, Some("order"));
        api.get("/api/v1/users?serach=a")
            .await
            .expect_error(400, Some("serach"));
    })
    .await;
}

#[tokio::test]
async fn users_import_applies_good_rows_and_reports_bad_ones() {
    each_backend(|api| async move {
        add_user(&api, "existing", "1000").await;
        let csv = "user_id,first_name,last_name,extension,pin,selfprov_id,selfprov_enabled\n\
                   alice,Alice,Smith,1001,1234,5001,yes\n\
                   bob,Bob,Jones,1000,,,\n\
                   carol,Carol,White,1003,12x4,,\n\
                   \"dan, jr\",Dan,Brown,1004,,,\n\
                   erin,Erin,Green,1005,,,no\n\
                   alice,Alice,Again,1006,,,\n\
                   frank,Frank,Black,1007,,,maybe\n\
                   gina,Gina,Grey\n";
        let r = api
            .raw(
                "POST",
                "/api/v1/users/import",
                "text/csv; charset=utf-8",
                csv,
            )
            .await
            .expect(200);
        assert_eq!(r.body["created"], 2, "{}", r.text);
        let errors = r.body["errors"].as_array().unwrap();
        let rows: Vec<(u64, Option<&str>)> = errors
            .iter()
            .map(|e| (e["row"].as_u64().unwrap(), e["field"].as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (3, Some("extension")), // bob: extension of `existing`
                (4, Some("pin")),       // carol: bad PIN
                (5, Some("user_id")),   // "dan, jr": space in the user ID
                (7, Some("user_id")),   // alice again
                (8, Some("selfprov_enabled")),
                (9, None), // short row
            ],
            "{}",
            r.text
        );
        for e in errors {
            assert!(!e["message"].as_str().unwrap().is_empty());
        }
        // Applied rows are complete; refused rows left nothing behind.
        let alice = api.get("/api/v1/users/alice").await.expect(200).body;
        assert_eq!(alice["first_name"], "Alice");
        assert_eq!(alice["has_pin"], true);
        assert_eq!(alice["selfprov_id"], "5001");
        let erin = api.get("/api/v1/users/erin").await.expect(200).body;
        assert_eq!(erin["selfprov_enabled"], false);
        assert_eq!(erin["has_pin"], false);
        for u in ["bob", "carol", "frank", "gina"] {
            api.get(&format!("/api/v1/users/{u}")).await.expect(404);
        }
        assert_eq!(api.get("/api/v1/users").await.body["total"], 3);
        // Whole-file refusals.
        api.raw(
            "POST",
            "/api/v1/users/import",
            "text/csv",
            "user_id,colour\nx,red\n",
        )
        .await
        .expect_error(400, Some("colour"));
        api.raw(
            "POST",
            "/api/v1/users/import",
            "text/csv",
            "user_id,first_name\nx,y\n",
        )
        .await
        .expect_error(400, Some("extension"));
        api.raw("POST", "/api/v1/users/import", "application/json", "{}")
            .await
            .expect_error(415, None);
        // Over the body limit: a JSON 413, nothing created.
        let big = format!("user_id,extension\n{}", "x,1\n".repeat(700_000));
        api.raw("POST", "/api/v1/users/import", "text/csv", &big)
            .await
            .expect_error(413, None);
        // Header only: nothing to do.
        let r = api
            .raw(
                "POST",
                "/api/v1/users/import",
                "text/csv",
                "user_id,extension\n",
            )
            .await
            .expect(200);
        assert_eq!(r.body, json!({"created": 0, "errors": []}));
    })
    .await;
}

#[tokio::test]
async fn devices_list_search_by_mac_and_get() {
    each_backend(|api| async move {
        add_user(&api, "jdoe", "1001").await;
        let d1 = api
            .store
            .bind_device(&phone("001122AABBCC"), "jdoe", AuthMethod::Pin)
            .await
            .unwrap();
        let mut other = phone("00AABB001122");
        other.vendor = Some("Yealink".into());
        other.model = Some("T54W".into());
        let d2 = api
            .store
            .bind_device(&other, "jdoe", AuthMethod::Pin)
            .await
            .unwrap();

        let r = api.get("/api/v1/devices").await.expect(200);
        assert_eq!(r.body["total"], 2);
        // Wazo's flow finds a phone by its MAC, typed any usual way.
        for q in [
            "00:11:22:aa:bb:cc",
            "001122AABBCC",
            "00-11-22-AA-BB-CC",
            "aa:bb:cc",
        ] {
            let r = api
                .get(&format!("/api/v1/devices?search={q}"))
                .await
                .expect(200);
            assert_eq!(r.body["total"], 1, "search {q}: {}", r.text);
            assert_eq!(r.body["items"][0]["id"], d1.id);
        }
        let r = api.get("/api/v1/devices?search=yealink").await.expect(200);
        assert_eq!(r.body["items"][0]["id"], d2.id);
        let r = api
            .get("/api/v1/devices?order=vendor&direction=desc&limit=1")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 2);
        assert_eq!(r.body["items"][0]["vendor"], "Yealink");

        let r = api
            .get(&format!("/api/v1/devices/{}", d1.id))
            .await
            .expect(200);
        assert_eq!(r.body["mac"], "001122AABBCC");
        assert_eq!(r.body["owner"], "jdoe");
        assert_eq!(r.body["state"], "provisioning");
        assert_eq!(r.body["lines"][0]["position"], 1);
        assert_eq!(r.body["lines"][0]["number"], "1001");
        assert_eq!(r.body["lines"].as_array().unwrap().len(), 1);
        api.get("/api/v1/devices/9999")
            .await
            .expect_error(404, None);
        api.get("/api/v1/devices/abc")
            .await
            .expect_error(400, Some("device_id"));
        api.get("/api/v1/devices/0")
            .await
            .expect_error(400, Some("device_id"));
        api.get("/api/v1/devices?order=secret")
            .await
            .expect_error(400, Some("order"));
    })
    .await;
}

#[tokio::test]
async fn audit_filters_and_pages() {
    each_backend(|api| async move {
        add_user(&api, "jdoe", "1001").await;
        add_user(&api, "asmith", "1002").await;
        api.store
            .bind_device(&phone("001122AABBCC"), "jdoe", AuthMethod::Pin)
            .await
            .unwrap();
        // Refused: bound to jdoe.
        api.store
            .bind_device(&phone("001122AABBCC"), "asmith", AuthMethod::Pin)
            .await
            .unwrap_err();
        api.store
            .bind_device(&phone("00AABB001122"), "asmith", AuthMethod::AdminCode)
            .await
            .unwrap();

        let r = api.get("/api/v1/audit").await.expect(200);
        assert_eq!(r.body["total"], 3);
        let outcomes: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes,
            ["bound", "already-bound", "bound"],
            "newest first"
        );

        let r = api
            .get("/api/v1/audit?device=001122AABBCC")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 2);
        let r = api.get("/api/v1/audit?user=asmith").await.expect(200);
        assert_eq!(r.body["total"], 2);
        let r = api
            .get("/api/v1/audit?user=asmith&outcome=bound")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 1);
        assert_eq!(r.body["items"][0]["auth_method"], "admin-code");
        assert_eq!(r.body["items"][0]["device"], "00AABB001122");
        let r = api.get("/api/v1/audit?limit=1&offset=1").await.expect(200);
        assert_eq!(r.body["total"], 3);
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(r.body["items"][0]["outcome"], "already-bound");
        // Time window: everything is after 2000 and before 2100.
        let r = api
            .get("/api/v1/audit?from=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 3);
        let r = api
            .get("/api/v1/audit?from=2100-01-01T00:00:00Z")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 0);
        let r = api
            .get("/api/v1/audit?until=2000-01-01T00:00:00Z")
            .await
            .expect(200);
        assert_eq!(r.body["total"], 0);
        api.get("/api/v1/audit?from=yesterday")
            .await
            .expect_error(400, Some("from"));
        api.get("/api/v1/audit?limit=5000")
            .await
            .expect_error(400, Some("limit"));
        api.get("/api/v1/audit?mac=x")
            .await
            .expect_error(400, Some("mac"));
        api.get("/api/v1/audit?from=2100-01-01T00:00:00Z&until=2000-01-01T00:00:00Z")
            .await
            .expect_error(400, Some("until"));
    })
    .await;
}

#[tokio::test]
async fn deleting_a_user_unbinds_their_phone() {
    each_backend(|api| async move {
        add_user(&api, "jdoe", "1001").await;
        let d = api
            .store
            .bind_device(&phone("001122AABBCC"), "jdoe", AuthMethod::Pin)
            .await
            .unwrap();
        api.delete("/api/v1/users/jdoe").await.expect(204);
        let r = api
            .get(&format!("/api/v1/devices/{}", d.id))
            .await
            .expect(200);
        assert_eq!(r.body["owner"], serde_json::Value::Null);
        assert_eq!(r.body["state"], "autoprov");
        let r = api.get("/api/v1/audit?outcome=unbound").await.expect(200);
        assert_eq!(r.body["total"], 1);
        assert_eq!(r.body["items"][0]["user_id"], "jdoe");
    })
    .await;
}
