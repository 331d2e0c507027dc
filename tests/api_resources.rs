//! API tests of the provisioning resources on every backend (see api_support.rs): lines, SIP
//! endpoints, devices, templates, user profiles, settings, the associations, and Wazo's manual
//! binding flow end to end.

#[path = "api_support.rs"]
mod support;

use serde_json::{json, Value};
use support::{each_backend, Api};

async fn create(api: &Api, path: &str, body: Value) -> Value {
    api.post(path, body).await.expect(201).body
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

#[tokio::test]
async fn wazo_flow_binds_a_phone_by_hand() {
    each_backend(|api| async move {
        // POST /users, POST /lines, POST /endpoints/sip.
        let user = create(
            &api,
            "/api/v1/users",
            json!({"user_id": "jdoe", "first_name": "Jane", "last_name": "Doe",
                   "extension": "1001", "pin": "4711"}),
        )
        .await;
        let line = create(
            &api,
            "/api/v1/lines",
            json!({"number": "1001", "caller_id_name": "Jane Doe", "label": "1001 - Jane"}),
        )
        .await;
        assert_eq!(line["context"], "default");
        assert_eq!(line["max_calls"], 4);
        assert_eq!(line["busy_trigger"], 2);
        let sip = create(&api, "/api/v1/endpoints/sip", json!({})).await;
        let password = sip["password"].as_str().unwrap().to_string();
        assert!(
            password.len() >= 16,
            "generated password too weak: {password:?}"
        );
        assert!(!sip["auth_username"].as_str().unwrap().is_empty());
        // A device, as the phone would have created it; found by MAC.
        let device = create(
            &api,
            "/api/v1/devices",
            json!({"mac": "00:11:22:aa:bb:cc", "vendor": "Yealink", "model": "T54W"}),
        )
        .await;
        assert_eq!(device["mac"], "001122AABBCC");
        assert_eq!(device["state"], "autoprov");

        let (line_id, sip_id, device_id) = (id(&line), id(&sip), id(&device));
        // A line without endpoint and user cannot go on a device (Wazo's checks).
        api.put_empty(&format!("/api/v1/lines/{line_id}/devices/{device_id}"))
            .await
            .expect_error(422, None);

        api.put_empty(&format!("/api/v1/users/jdoe/lines/{line_id}"))
            .await
            .expect(204);
        // Idempotent.
        api.put_empty(&format!("/api/v1/users/jdoe/lines/{line_id}"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{line_id}/endpoints/sip/{sip_id}"))
            .await
            .expect(204);
        let found = api
            .get("/api/v1/devices?search=00:11:22:AA:BB:CC")
            .await
            .expect(200);
        assert_eq!(found.body["total"], 1);
        assert_eq!(found.body["items"][0]["id"], device_id);
        api.put_empty(&format!("/api/v1/lines/{line_id}/devices/{device_id}"))
            .await
            .expect(204);

        let line = api
            .get(&format!("/api/v1/lines/{line_id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(line["user_ids"], json!([id(&user)]));
        assert_eq!(line["sip_endpoint_id"], sip_id);
        assert_eq!(line["device_ids"], json!([device_id]));
        let device = api
            .get(&format!("/api/v1/devices/{device_id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(device["lines"][0]["position"], 1);
        assert_eq!(device["lines"][0]["line_id"], line_id);
        assert_eq!(device["lines"][0]["number"], "1001");
        let sip = api
            .get(&format!("/api/v1/endpoints/sip/{sip_id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(sip["line_id"], line_id);
        assert_eq!(
            sip["password"],
            password.as_str(),
            "admins read the password back"
        );
        // Lists never carry passwords.
        let list = api.get("/api/v1/endpoints/sip").await.expect(200);
        assert!(list.body["items"][0].get("password").is_none());
        assert!(!list.text.contains(&password));

        // The endpoint cannot be taken away while the line is on a device.
        api.delete(&format!("/api/v1/lines/{line_id}/endpoints/sip/{sip_id}"))
            .await
            .expect_error(409, None);
        // Undo in order.
        api.delete(&format!("/api/v1/lines/{line_id}/devices/{device_id}"))
            .await
            .expect(204);
        api.delete(&format!("/api/v1/lines/{line_id}/devices/{device_id}"))
            .await
            .expect_error(404, None);
        api.delete(&format!("/api/v1/lines/{line_id}/endpoints/sip/{sip_id}"))
            .await
            .expect(204);
        api.delete(&format!("/api/v1/users/jdoe/lines/{line_id}"))
            .await
            .expect(204);
        api.delete(&format!("/api/v1/users/jdoe/lines/{line_id}"))
            .await
            .expect_error(404, None);
        let line = api
            .get(&format!("/api/v1/lines/{line_id}"))
            .await
            .expect(200)
            .body;
        assert_eq!(line["user_ids"], json!([]));
        assert_eq!(line["sip_endpoint_id"], Value::Null);
        assert_eq!(line["device_ids"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn associations_refuse_unknown_and_taken_things() {
    each_backend(|api| async move {
        create(
            &api,
            "/api/v1/users",
            json!({"user_id": "jdoe", "extension": "1001"}),
        )
        .await;
        let l1 = id(&create(&api, "/api/v1/lines", json!({"number": "1001"})).await);
        let l2 = id(&create(&api, "/api/v1/lines", json!({"number": "1002"})).await);
        let s1 = id(&create(&api, "/api/v1/endpoints/sip", json!({})).await);
        let s2 = id(&create(&api, "/api/v1/endpoints/sip", json!({})).await);
        let basic = id(&create(
            &api,
            "/api/v1/devices",
            json!({"device_name": "SEP001122334455", "device_type": "basic"}),
        )
        .await);

        api.put_empty("/api/v1/users/nobody/lines/1")
            .await
            .expect_error(404, None);
        api.put_empty("/api/v1/users/jdoe/lines/9999")
            .await
            .expect_error(404, None);
        api.put_empty("/api/v1/users/jdoe/lines/x")
            .await
            .expect_error(400, Some("line_id"));
        api.put_empty(&format!("/api/v1/lines/{l1}/endpoints/sip/9999"))
            .await
            .expect_error(404, None);
        api.put_empty(&format!("/api/v1/lines/9999/endpoints/sip/{s1}"))
            .await
            .expect_error(404, None);
        api.put_empty(&format!("/api/v1/lines/{l1}/devices/9999"))
            .await
            .expect_error(404, None);

        // One endpoint per line, one line per endpoint.
        api.put_empty(&format!("/api/v1/lines/{l1}/endpoints/sip/{s1}"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{l1}/endpoints/sip/{s2}"))
            .await
            .expect_error(409, None);
        api.put_empty(&format!("/api/v1/lines/{l2}/endpoints/sip/{s1}"))
            .await
            .expect_error(409, None);
        api.delete(&format!("/api/v1/lines/{l2}/endpoints/sip/{s2}"))
            .await
            .expect_error(404, None);
        // The endpoint in use cannot be deleted.
        api.delete(&format!("/api/v1/endpoints/sip/{s1}"))
            .await
            .expect_error(409, None);

        // A basic device takes one line.
        api.put_empty(&format!("/api/v1/users/jdoe/lines/{l1}"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/users/jdoe/lines/{l2}"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{l2}/endpoints/sip/{s2}"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{l1}/devices/{basic}?position=1"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{l2}/devices/{basic}"))
            .await
            .expect_error(409, None);
        api.put_empty(&format!("/api/v1/lines/{l2}/devices/{basic}?position=0"))
            .await
            .expect_error(400, Some("position"));
        api.put_empty(&format!("/api/v1/lines/{l2}/devices/{basic}?slot=2"))
            .await
            .expect_error(400, Some("slot"));
        // An advanced device: positions are unique.
        let adv = id(&create(&api, "/api/v1/devices", json!({"mac": "00AABBCCDDEE"})).await);
        api.put_empty(&format!("/api/v1/lines/{l1}/devices/{adv}?position=2"))
            .await
            .expect(204);
        api.put_empty(&format!("/api/v1/lines/{l2}/devices/{adv}?position=2"))
            .await
            .expect_error(409, None);
        api.put_empty(&format!("/api/v1/lines/{l2}/devices/{adv}"))
            .await
            .expect(204);
        let d = api
            .get(&format!("/api/v1/devices/{adv}"))
            .await
            .expect(200)
            .body;
        let positions: Vec<(i64, i64)> = d["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["position"].as_i64().unwrap(),
                    l["line_id"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(positions, [(1, l2), (2, l1)]);
    })
    .await;
}

#[tokio::test]
async fn lines_crud_put_is_partial_and_validates() {
    each_backend(|api| async move {
        let line = create(
            &api,
            "/api/v1/lines",
            json!({"number": "2001", "label": "front desk",
                   "call_forward": {"busy": {"enabled": true, "destination": "2999"}}}),
        )
        .await;
        let lid = id(&line);
        assert_eq!(line["call_forward"]["busy"]["destination"], "2999");
        // Same number in the same context: 409; in another context: fine.
        api.post("/api/v1/lines", json!({"number": "2001"}))
            .await
            .expect_error(409, Some("number"));
        create(
            &api,
            "/api/v1/lines",
            json!({"number": "2001", "context": "lab"}),
        )
        .await;
        // Field checks.
        api.post("/api/v1/lines", json!({"number": "20a1"}))
            .await
            .expect_error(422, Some("number"));
        api.post(
            "/api/v1/lines",
            json!({"number": "2002", "max_calls": 2, "busy_trigger": 3}),
        )
        .await
        .expect_error(422, Some("busy_trigger"));
        api.post(
            "/api/v1/lines",
            json!({"number": "2002", "max_calls": "four"}),
        )
        .await
        .expect_error(422, Some("max_calls"));
        api.post(
            "/api/v1/lines",
            json!({"number": "2002", "call_forward": {"al": {}}}),
        )
        .await
        .expect_error(422, Some("call_forward.al"));

        // PUT changes only what it names, nested objects field by field.
        api.put(
            &format!("/api/v1/lines/{lid}"),
            json!({"caller_id_name": "Reception", "call_forward": {"all": {"enabled": false}}}),
        )
        .await
        .expect(204);
        let l = api
            .get(&format!("/api/v1/lines/{lid}"))
            .await
            .expect(200)
            .body;
        assert_eq!(l["caller_id_name"], "Reception");
        assert_eq!(l["label"], "front desk");
        assert_eq!(l["call_forward"]["busy"]["destination"], "2999");
        assert_eq!(l["call_forward"]["busy"]["enabled"], true);
        // null clears an optional field.
        api.put(
            &format!("/api/v1/lines/{lid}"),
            json!({"voicemail": "2001"}),
        )
        .await
        .expect(204);
        api.put(&format!("/api/v1/lines/{lid}"), json!({"voicemail": null}))
            .await
            .expect(204);
        let l = api
            .get(&format!("/api/v1/lines/{lid}"))
            .await
            .expect(200)
            .body;
        assert_eq!(l["voicemail"], Value::Null);
        // A refused PUT changes nothing.
        api.put(
            &format!("/api/v1/lines/{lid}"),
            json!({"label": "x", "max_calls": 0}),
        )
        .await
        .expect_error(422, Some("max_calls"));
        api.put(&format!("/api/v1/lines/{lid}"), json!({"id": 5}))
            .await
            .expect_error(422, Some("id"));
        api.put(&format!("/api/v1/lines/{lid}"), json!([1, 2]))
            .await
            .expect_error(422, None);
        api.raw(
            "PUT",
            &format!("/api/v1/lines/{lid}"),
            "application/json",
            "{",
        )
        .await
        .expect_error(400, None);
        assert_eq!(
            api.get(&format!("/api/v1/lines/{lid}")).await.body["label"],
            "front desk"
        );
        api.put("/api/v1/lines/9999", json!({"label": "x"}))
            .await
            .expect_error(404, None);

        // Lists.
        for n in ["2003", "2004", "3001"] {
            create(&api, "/api/v1/lines", json!({"number": n})).await;
        }
        let r = api
            .get("/api/v1/lines?search=200&order=number&direction=desc&limit=2")
            .await;
        let r = r.expect(200);
        assert_eq!(r.body["total"], 4, "{}", r.text);
        let numbers: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["number"].as_str().unwrap())
            .collect();
        assert_eq!(numbers, ["2004", "2003"]);
        api.get("/api/v1/lines?order=secret")
            .await
            .expect_error(400, Some("order"));

        api.delete(&format!("/api/v1/lines/{lid}"))
            .await
            .expect(204);
        api.get(&format!("/api/v1/lines/{lid}"))
            .await
            .expect_error(404, None);
        api.delete(&format!("/api/v1/lines/{lid}"))
            .await
            .expect_error(404, None);
    })
    .await;
}

#[tokio::test]
async fn sip_endpoints_crud() {
    each_backend(|api| async move {
        let e = create(
            &api,
            "/api/v1/endpoints/sip",
            json!({"auth_username": "desk1001", "password": "s3cret-Passw0rd-xyz", "transport": "tcp"}),
        )
        .await;
        let eid = id(&e);
        assert_eq!(e["auth_username"], "desk1001");
        assert_eq!(e["password"], "s3cret-Passw0rd-xyz");
        assert_eq!(e["transport"], "tcp");
        assert_eq!(e["digest_required"], true);
        api.post("/api/v1/endpoints/sip", json!({"auth_username": "desk1001"}))
            .await
            .expect_error(409, Some("auth_username"));
        api.post("/api/v1/endpoints/sip", json!({"transport": "sctp"}))
            .await
            .expect_error(422, Some("transport"));
        // PUT without a password keeps it.
        api.put(&format!("/api/v1/endpoints/sip/{eid}"), json!({"transport": "tls"}))
            .await
            .expect(204);
        let e = api.get(&format!("/api/v1/endpoints/sip/{eid}")).await.expect(200).body;
        assert_eq!(e["transport"], "tls");
        assert_eq!(e["password"], "s3cret-Passw0rd-xyz");
        api.put(
            &format!("/api/v1/endpoints/sip/{eid}"),
            json!({"password": "An0ther-Passw0rd-abc"}),
        )
        .await
        .expect(204);
        let e = api.get(&format!("/api/v1/endpoints/sip/{eid}")).await.expect(200).body;
        assert_eq!(e["password"], "An0ther-Passw0rd-abc");
        let r = api.get("/api/v1/endpoints/sip?search=desk").await.expect(200);
        assert_eq!(r.body["total"], 1);
        assert!(!r.text.contains("An0ther"));
        api.delete(&format!("/api/v1/endpoints/sip/{eid}")).await.expect(204);
        api.get(&format!("/api/v1/endpoints/sip/{eid}")).await.expect_error(404, None);
    })
    .await;
}

#[tokio::test]
async fn devices_crud() {
    each_backend(|api| async move {
        let d = create(
            &api,
            "/api/v1/devices",
            json!({"mac": "00-11-22-33-44-55", "vendor": "Cisco", "model": "CP-8851",
                   "description": "lobby"}),
        )
        .await;
        let did = id(&d);
        assert_eq!(d["mac"], "001122334455");
        assert_eq!(d["protocol"], "sip");
        assert_eq!(d["device_type"], "advanced");
        assert_eq!(d["owner"], Value::Null);
        api.post("/api/v1/devices", json!({"mac": "001122334455"}))
            .await
            .expect_error(409, Some("mac"));
        api.post("/api/v1/devices", json!({"mac": "0011223344"}))
            .await
            .expect_error(422, Some("mac"));
        api.post("/api/v1/devices", json!({}))
            .await
            .expect_error(422, Some("mac"));
        api.post(
            "/api/v1/devices",
            json!({"mac": "001122334466", "state": "lost"}),
        )
        .await
        .expect_error(422, Some("state"));
        api.post(
            "/api/v1/devices",
            json!({"mac": "001122334466", "template_id": 9999}),
        )
        .await
        .expect_error(422, Some("template_id"));
        api.put(
            &format!("/api/v1/devices/{did}"),
            json!({"description": "hall", "device_type": "basic", "state": "provisioned"}),
        )
        .await
        .expect(204);
        let d = api
            .get(&format!("/api/v1/devices/{did}"))
            .await
            .expect(200)
            .body;
        assert_eq!(d["description"], "hall");
        assert_eq!(d["device_type"], "basic");
        assert_eq!(d["state"], "provisioned");
        assert_eq!(d["vendor"], "Cisco");
        api.delete(&format!("/api/v1/devices/{did}"))
            .await
            .expect(204);
        api.get(&format!("/api/v1/devices/{did}"))
            .await
            .expect_error(404, None);
        api.delete(&format!("/api/v1/devices/{did}"))
            .await
            .expect_error(404, None);
    })
    .await;
}

#[tokio::test]
async fn templates_and_profiles() {
    each_backend(|api| async move {
        // The migration seeds a default of each.
        let r = api.get("/api/v1/templates/device").await.expect(200);
        assert_eq!(r.body["total"], 1);
        assert_eq!(r.body["items"][0]["name"], "default");
        assert_eq!(api.get("/api/v1/templates/line").await.body["total"], 1);
        assert_eq!(api.get("/api/v1/user-profiles").await.body["total"], 1);

        let dt = create(
            &api,
            "/api/v1/templates/device",
            json!({"name": "sales", "description_pattern": "#FirstName# #LastName# (#Product#)",
                   "line_keys": 2, "security": {"transport": "tls", "digest_required": true, "tls": true},
                   "speed_dials": [{"position": 1, "number": "8000", "label": "IVR"}],
                   "timezone": "Europe/Paris"}),
        )
        .await;
        assert_eq!(dt["security"]["transport"], "tls");
        assert_eq!(dt["speed_dials"][0]["label"], "IVR");
        assert_eq!(dt["locale"], "en-US");
        // An unknown tag is refused when the template is saved.
        api.post(
            "/api/v1/templates/device",
            json!({"name": "bad", "description_pattern": "#Nickname#"}),
        )
        .await
        .expect_error(422, Some("description_pattern"));
        api.post("/api/v1/templates/device", json!({"name": "sales"}))
            .await
            .expect_error(409, Some("name"));
        api.post(
            "/api/v1/templates/device",
            json!({"name": "x", "security": {"transport": "tls"}}),
        )
        .await
        .expect_error(422, Some("security.digest_required"));

        let lt = create(
            &api,
            "/api/v1/templates/line",
            json!({"name": "sales", "label_pattern": "#Extension# #LastName#", "max_calls": 6}),
        )
        .await;
        assert_eq!(lt["busy_trigger"], 2);
        api.post(
            "/api/v1/templates/line",
            json!({"name": "bad", "caller_id_name_pattern": "#First#"}),
        )
        .await
        .expect_error(422, Some("caller_id_name_pattern"));

        let p = create(
            &api,
            "/api/v1/user-profiles",
            json!({"name": "sales", "device_template_id": id(&dt), "line_template_id": id(&lt),
                   "allow_provision": true}),
        )
        .await;
        assert_eq!(p["max_devices"], 10);
        api.post(
            "/api/v1/user-profiles",
            json!({"name": "bad", "device_template_id": 9999, "line_template_id": id(&lt)}),
        )
        .await
        .expect_error(422, Some("device_template_id"));
        // Templates in use cannot be deleted.
        api.delete(&format!("/api/v1/templates/device/{}", id(&dt)))
            .await
            .expect_error(409, None);
        api.delete(&format!("/api/v1/templates/line/{}", id(&lt)))
            .await
            .expect_error(409, None);

        // A user with the profile.
        let u = create(
            &api,
            "/api/v1/users",
            json!({"user_id": "amy", "extension": "3001", "profile_id": id(&p)}),
        )
        .await;
        assert_eq!(u["profile_id"], id(&p));
        api.post(
            "/api/v1/users",
            json!({"user_id": "ben", "extension": "3002", "profile_id": 9999}),
        )
        .await
        .expect_error(422, Some("profile_id"));

        // PUT is partial.
        api.put(
            &format!("/api/v1/templates/device/{}", id(&dt)),
            json!({"line_keys": 4, "security": {"tls": false}}),
        )
        .await
        .expect(204);
        let got = api
            .get(&format!("/api/v1/templates/device/{}", id(&dt)))
            .await
            .expect(200)
            .body;
        assert_eq!(got["line_keys"], 4);
        assert_eq!(got["security"]["tls"], false);
        assert_eq!(got["security"]["transport"], "tls");
        assert_eq!(got["timezone"], "Europe/Paris");
        api.put(
            &format!("/api/v1/user-profiles/{}", id(&p)),
            json!({"max_devices": 2}),
        )
        .await
        .expect(204);
        let got = api
            .get(&format!("/api/v1/user-profiles/{}", id(&p)))
            .await
            .expect(200)
            .body;
        assert_eq!(got["max_devices"], 2);
        assert_eq!(got["allow_provision"], true);

        api.get("/api/v1/templates/line/9999").await.expect_error(404, None);
        api.get("/api/v1/user-profiles/abc").await.expect_error(400, Some("profile_id"));
        let r = api.get("/api/v1/templates/device?search=sal").await.expect(200);
        assert_eq!(r.body["total"], 1);

        // Deleting the profile: its user falls back to the default.
        api.delete(&format!("/api/v1/user-profiles/{}", id(&p))).await.expect(204);
        let u = api.get("/api/v1/users/amy").await.expect(200).body;
        assert_eq!(u["profile_id"], Value::Null);
        api.delete(&format!("/api/v1/templates/line/{}", id(&lt))).await.expect(204);
    })
    .await;
}

#[tokio::test]
async fn users_put_is_partial_and_keeps_secrets() {
    each_backend(|api| async move {
        create(
            &api,
            "/api/v1/users",
            json!({"user_id": "jdoe", "extension": "1001", "pin": "1234", "first_name": "Jane"}),
        )
        .await;
        create(
            &api,
            "/api/v1/users",
            json!({"user_id": "asmith", "extension": "1002"}),
        )
        .await;
        api.put(
            "/api/v1/users/jdoe",
            json!({"last_name": "Doe", "password": "correct horse"}),
        )
        .await
        .expect(204);
        let u = api.get("/api/v1/users/jdoe").await.expect(200).body;
        assert_eq!(u["first_name"], "Jane");
        assert_eq!(u["last_name"], "Doe");
        assert_eq!(u["has_pin"], true, "PUT without pin keeps it");
        assert_eq!(u["has_password"], true);
        let stored = api.store.get_user("jdoe").await.unwrap().unwrap();
        assert!(selfprov::provisioning::secret::verify_secret(
            stored.pin_hash.as_deref().unwrap(),
            "1234"
        ));
        api.put("/api/v1/users/jdoe", json!({"pin": "9876"}))
            .await
            .expect(204);
        let stored = api.store.get_user("jdoe").await.unwrap().unwrap();
        assert!(selfprov::provisioning::secret::verify_secret(
            stored.pin_hash.as_deref().unwrap(),
            "9876"
        ));
        // Conflicts and bad values.
        api.put("/api/v1/users/jdoe", json!({"extension": "1002"}))
            .await
            .expect_error(409, Some("extension"));
        api.put("/api/v1/users/jdoe", json!({"password": "short"}))
            .await
            .expect_error(422, Some("password"));
        api.put("/api/v1/users/jdoe", json!({"has_pin": false}))
            .await
            .expect_error(422, Some("has_pin"));
        api.put("/api/v1/users/nobody", json!({}))
            .await
            .expect_error(404, None);
        // Renaming the user ID: the new one addresses the user.
        api.put("/api/v1/users/jdoe", json!({"user_id": "jane"}))
            .await
            .expect(204);
        api.get("/api/v1/users/jdoe").await.expect_error(404, None);
        let u = api.get("/api/v1/users/jane").await.expect(200).body;
        // And the numeric store ID works as the path key too.
        let by_id = api
            .get(&format!("/api/v1/users/{}", u["id"]))
            .await
            .expect(200)
            .body;
        assert_eq!(by_id["user_id"], "jane");
        assert!(!serde_json::to_string(&by_id).unwrap().contains("argon2"));
    })
    .await;
}

#[tokio::test]
async fn settings_get_and_put() {
    each_backend(|api| async move {
        let s = api.get("/api/v1/selfprov/settings").await.expect(200).body;
        assert_eq!(s["auth_mode"], "secure-users");
        assert_eq!(s["has_admin_code"], false);
        assert_eq!(s["ivr_extensions"], json!(["8000"]));
        assert!(s["default_profile_id"].is_i64());
        assert!(s.get("admin_code").is_none() && s.get("admin_code_hash").is_none());

        api.put(
            "/api/v1/selfprov/settings",
            json!({"auth_mode": "secure-users-and-admins", "admin_code": "13579",
                   "languages": ["fr-FR", "en-US"], "allow_admin_takeover": true}),
        )
        .await
        .expect(204);
        let s = api.get("/api/v1/selfprov/settings").await.expect(200);
        assert_eq!(s.body["auth_mode"], "secure-users-and-admins");
        assert_eq!(s.body["has_admin_code"], true);
        assert_eq!(s.body["languages"], json!(["fr-FR", "en-US"]));
        assert_eq!(
            s.body["ivr_extensions"],
            json!(["8000"]),
            "untouched fields kept"
        );
        assert!(!s.text.contains("argon2") && !s.text.contains("13579"));
        let stored = api.store.get_settings().await.unwrap();
        assert!(selfprov::provisioning::secret::verify_secret(
            stored.admin_code_hash.as_deref().unwrap(),
            "13579"
        ));
        // Changing something else keeps the code; "" removes it.
        api.put(
            "/api/v1/selfprov/settings",
            json!({"ivr_extensions": ["8000", "8001"]}),
        )
        .await
        .expect(204);
        assert!(api
            .store
            .get_settings()
            .await
            .unwrap()
            .admin_code_hash
            .is_some());
        // A pack that is not installed: the server could not load it.
        let r = api
            .put("/api/v1/selfprov/settings", json!({"languages": ["it-IT"]}))
            .await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text);
        assert!(
            r.text.contains("it-IT") && r.text.contains("en-US, es-ES, fr-FR"),
            "names the missing pack and the installed ones: {}",
            r.text
        );
        // The admin mode cannot lose its code: the server could not start with that.
        let r = api
            .put("/api/v1/selfprov/settings", json!({"admin_code": ""}))
            .await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text);
        assert_eq!(r.body["field"], "admin_code", "{}", r.text);
        api.put(
            "/api/v1/selfprov/settings",
            json!({"admin_code": "", "auth_mode": "secure-users"}),
        )
        .await
        .expect(204);
        assert_eq!(
            api.get("/api/v1/selfprov/settings").await.body["has_admin_code"],
            false
        );
        let r = api
            .put(
                "/api/v1/selfprov/settings",
                json!({"auth_mode": "secure-users-and-admins"}),
            )
            .await;
        assert_eq!(
            r.status.as_u16(),
            422,
            "admin mode without a code: {}",
            r.text
        );
        api.put(
            "/api/v1/selfprov/settings",
            json!({"auth_mode": "secure-users-and-admins", "admin_code": "13579"}),
        )
        .await
        .expect(204);
        // Refusals name the field and change nothing.
        for (body, field) in [
            (json!({"auth_mode": "open"}), "auth_mode"),
            (json!({"admin_code": "12a"}), "admin_code"),
            (json!({"admin_code": 1234}), "admin_code"),
            (json!({"languages": []}), "languages"),
            (json!({"languages": ["en-US", "it-IT"]}), "languages"),
            (
                json!({"languages": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]}),
                "languages",
            ),
            (json!({"ivr_extensions": ["80a"]}), "ivr_extensions"),
            (json!({"default_profile_id": 9999}), "default_profile_id"),
            (json!({"autoreg_start_dn": "1000"}), "autoreg_end_dn"),
            (json!({"has_admin_code": true}), "has_admin_code"),
            (json!({"colour": "red"}), "colour"),
        ] {
            let r = api.put("/api/v1/selfprov/settings", body.clone()).await;
            assert_eq!(r.status.as_u16(), 422, "{body}: {}", r.text);
            assert_eq!(r.body["field"].as_str(), Some(field), "{body}: {}", r.text);
        }
        let s = api.get("/api/v1/selfprov/settings").await.body;
        assert_eq!(s["auth_mode"], "secure-users-and-admins");
        assert_eq!(s["ivr_extensions"], json!(["8000", "8001"]));
    })
    .await;
}

#[tokio::test]
async fn device_template_resync_event_is_checked() {
    each_backend(|api| async move {
        let t = create(
            &api,
            "/api/v1/templates/device",
            json!({"name": "snom-quiet", "resync_event": "check-sync;reboot=false"}),
        )
        .await;
        assert_eq!(t["resync_event"], "check-sync;reboot=false", "{t:#}");
        let path = format!("/api/v1/templates/device/{}", id(&t));
        let r = api
            .put(&path, json!({"resync_event": "reboot-now"}))
            .await
            .expect_error(422, Some("resync_event"));
        assert!(
            r.body.to_string().contains("check-sync"),
            "the error lists the choices: {}",
            r.body
        );
        api.put(&path, json!({"resync_event": null}))
            .await
            .expect(204);
        let t = api.get(&path).await.expect(200).body;
        assert!(t["resync_event"].is_null(), "{t:#}");
    })
    .await;
}
