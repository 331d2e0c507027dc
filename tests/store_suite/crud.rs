//! CRUD, lists, associations, settings, tokens and audit, on either backend.

use super::{add_user, cisco, new_user, Ctx};
use selfprov::store::{
    AuditOutcome, AuditQuery, AuthMethod, CallForward, DeviceType, ListQuery, NewDevice,
    NewDeviceTemplate, NewLine, NewLineTemplate, NewSipEndpoint, NewUserProfile, SelfProvSettings,
    SortDirection, SpeedDial, StoreError, Transport, UserInput,
};
use std::time::{Duration, SystemTime};

fn q() -> ListQuery {
    ListQuery::default()
}

pub async fn seeded_defaults_make_a_fresh_install_work(t: &Ctx) {
    let s = &t.store;
    assert_eq!(s.schema_version().await.unwrap(), 4);
    let settings = s.get_settings().await.unwrap();
    assert_eq!(settings.auth_mode, "secure-users");
    assert_eq!(settings.ivr_extensions, vec!["8000"]);
    assert_eq!(settings.languages, vec!["en-US"]);
    assert!(!settings.allow_admin_takeover);
    let profile = s
        .get_user_profile(settings.default_profile_id.expect("a default profile"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.spec.name, "default");
    assert!(profile.spec.allow_provision);
    assert_eq!(profile.spec.max_devices, 10);
    let dt = s
        .get_device_template(profile.spec.device_template_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dt.spec.description_pattern,
        "#FirstName# #LastName# (#Product# #Protocol#)"
    );
    assert_eq!(
        dt.spec.speed_dials,
        vec![SpeedDial {
            position: 1,
            number: "8000".into(),
            label: "IVR".into()
        }]
    );
    assert_eq!(settings.autoreg_device_template_id, Some(dt.id));
    let lt = s
        .get_line_template(profile.spec.line_template_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lt.spec.caller_id_name_pattern, "#FirstName# #LastName#");
    assert_eq!(lt.spec.label_pattern, "#Extension# - #FirstName#");
    assert_eq!((lt.spec.max_calls, lt.spec.busy_trigger), (4, 2));
    assert_eq!(s.list_device_templates(&q()).await.unwrap().total, 1);
    assert_eq!(s.list_line_templates(&q()).await.unwrap().total, 1);
    assert_eq!(s.list_user_profiles(&q()).await.unwrap().total, 1);
}

pub async fn users_page_search_order_and_update(t: &Ctx) {
    let s = &t.store;
    for (i, (id, first, last)) in [
        ("jdoe", "Jane", "Doe"),
        ("asmith", "Alice", "Smith"),
        ("bmartin", "Bob", "Martin"),
        ("cdoe_x", "Carl", "Doe"),
    ]
    .iter()
    .enumerate()
    {
        add_user(s, id, first, last, &format!("100{i}")).await;
    }
    let page = s.list_users_page(&q()).await.unwrap();
    assert_eq!(page.total, 4);
    let ids: Vec<_> = page.items.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(
        ids,
        ["asmith", "bmartin", "cdoe_x", "jdoe"],
        "default order user_id"
    );

    let page = s
        .list_users_page(&ListQuery {
            limit: Some(2),
            offset: 1,
            order: Some("extension".into()),
            direction: SortDirection::Desc,
            search: None,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 4, "total counts every match, not the page");
    let ext: Vec<_> = page.items.iter().map(|u| u.extension.as_str()).collect();
    assert_eq!(ext, ["1002", "1001"]);

    // Case-insensitive substring search over names and IDs; LIKE wildcards are literal.
    let page = s
        .list_users_page(&ListQuery {
            search: Some("DOE".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let page = s
        .list_users_page(&ListQuery {
            search: Some("_x".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1, "'_' is not a wildcard");
    let page = s
        .list_users_page(&ListQuery {
            search: Some("%".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 0, "'%' is not a wildcard");

    let e = s
        .list_users_page(&ListQuery {
            order: Some("pin_hash".into()),
            ..q()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid { field: "order", .. }),
        "{e}"
    );

    // get by store ID or user ID; update; conflicts; not found.
    let jdoe = s.get_user("jdoe").await.unwrap().unwrap();
    assert_eq!(s.get_user(jdoe.id).await.unwrap().unwrap(), jdoe);
    let profile = s
        .create_user_profile(NewUserProfile {
            name: "sales".into(),
            device_template_id: 1,
            line_template_id: 1,
            allow_provision: true,
            ..Default::default()
        })
        .await;
    let profile = match profile {
        Ok(p) => p,
        // Template IDs are not 1 everywhere: look them up.
        Err(_) => {
            let d = s.get_settings().await.unwrap();
            let dp = s
                .get_user_profile(d.default_profile_id.unwrap())
                .await
                .unwrap()
                .unwrap();
            s.create_user_profile(NewUserProfile {
                name: "sales".into(),
                ..dp.spec
            })
            .await
            .unwrap()
        }
    };
    let updated = s
        .update_user(
            jdoe.id,
            UserInput {
                user_id: "jdoe".into(),
                first_name: "Janet".into(),
                last_name: "Doe".into(),
                extension: "2001".into(),
                selfprov_id: Some("4711".into()),
                selfprov_enabled: true,
                profile_id: Some(profile.id),
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
                pin_hash: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.first_name, "Janet");
    assert_eq!(updated.extension, "2001");
    assert_eq!(updated.profile_id, Some(profile.id));
    assert!(updated.password_hash.is_some());
    let json = serde_json::to_string(&updated).unwrap();
    assert!(
        !json.contains("argon2"),
        "hashes are never serialised: {json}"
    );
    let e = s
        .update_user(
            jdoe.id,
            UserInput {
                extension: "1001".into(),
                ..UserInput::from(new_user("jdoe", "1001"))
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::ExtensionTaken { .. }), "{e}");
    assert_eq!(e.http_status(), 409);
    let e = s
        .update_user(9999, UserInput::from(new_user("x", "9")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "user",
                id: 9999
            }
        ),
        "{e}"
    );
    let e = s
        .create_user(UserInput {
            profile_id: Some(424242),
            ..UserInput::from(new_user("newbie", "3000"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "profile_id",
                ..
            }
        ),
        "{e}"
    );

    assert!(s.delete_user(jdoe.id).await.unwrap());
    assert!(!s.delete_user(jdoe.id).await.unwrap());
    assert!(s.get_user(jdoe.id).await.unwrap().is_none());
}

pub async fn lines_and_sip_endpoints(t: &Ctx) {
    let s = &t.store;
    let line = s
        .create_line(NewLine {
            number: "1001".into(),
            caller_id_name: "Jane Doe".into(),
            label: "1001 - Jane".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(line.spec.context, "default");
    assert_eq!((line.spec.max_calls, line.spec.busy_trigger), (4, 2));
    assert!(line.user_ids.is_empty() && line.sip_endpoint_id.is_none());
    let e = s
        .create_line(NewLine {
            number: "1001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Duplicate {
                what: "line",
                field: "number",
                ..
            }
        ),
        "{e}"
    );
    // The same number in another context is another line.
    let other = s
        .create_line(NewLine {
            number: "1001".into(),
            context: "lab".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = s
        .create_line(NewLine {
            number: "10a1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "number",
                ..
            }
        ),
        "{e}"
    );
    let e = s
        .create_line(NewLine {
            number: "1002".into(),
            busy_trigger: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "busy_trigger",
                ..
            }
        ),
        "{e}"
    );

    let mut change = line.spec.clone();
    change.label = "Front desk".into();
    change.call_forward.no_answer = CallForward {
        destination: Some("1099".into()),
        enabled: true,
    };
    let updated = s.update_line(line.id, change).await.unwrap();
    assert_eq!(updated.spec.label, "Front desk");
    assert!(updated.spec.call_forward.no_answer.enabled);
    let e = s
        .update_line(other.id, line.spec.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { .. }), "{e}");

    let page = s
        .list_lines(&ListQuery {
            search: Some("front".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].id, line.id);

    // SIP endpoints: generated credentials, strong and unique; never serialised.
    let a = s
        .create_sip_endpoint(NewSipEndpoint::default())
        .await
        .unwrap();
    let b = s
        .create_sip_endpoint(NewSipEndpoint {
            transport: Transport::Tls,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.password.len(), 24);
    assert!(a.password.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a.password, b.password);
    assert_ne!(a.auth_username, b.auth_username);
    assert_eq!(b.transport, Transport::Tls);
    assert!(a.digest_required);
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains(&a.password), "{json}");
    assert!(!format!("{a:?}").contains(&a.password));
    let e = s
        .create_sip_endpoint(NewSipEndpoint {
            auth_username: Some(a.auth_username.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Duplicate {
                field: "auth_username",
                ..
            }
        ),
        "{e}"
    );
    let kept = s
        .update_sip_endpoint(
            a.id,
            NewSipEndpoint {
                transport: Transport::Tcp,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            kept.password.as_str(),
            kept.auth_username.as_str(),
            kept.transport
        ),
        (
            a.password.as_str(),
            a.auth_username.as_str(),
            Transport::Tcp
        ),
        "None keeps the credentials"
    );
    assert_eq!(s.list_sip_endpoints(&q()).await.unwrap().total, 2);
    assert!(s.delete_sip_endpoint(b.id).await.unwrap());
    assert!(s.get_sip_endpoint(b.id).await.unwrap().is_none());
    assert!(s.delete_line(other.id).await.unwrap());
    assert!(!s.delete_line(other.id).await.unwrap());
}

pub async fn wazo_flow_associations_are_checked(t: &Ctx) {
    let s = &t.store;
    let user = add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    let line = s
        .create_line(NewLine {
            number: "1001".into(),
            label: "Jane".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sip = s
        .create_sip_endpoint(NewSipEndpoint::default())
        .await
        .unwrap();
    let device = s
        .create_device(NewDevice {
            mac: Some("00:22:90:5c:8e:3a".into()),
            model: Some("CP-8851".into()),
            device_type: DeviceType::Basic,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        device.mac.as_deref(),
        Some("0022905C8E3A"),
        "MAC normalised"
    );
    let e = s
        .create_device(NewDevice {
            mac: Some("0022905C8E3A".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Duplicate { field: "mac", .. }),
        "{e}"
    );
    let e = s.create_device(NewDevice::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { field: "mac", .. }), "{e}");

    // Device search by MAC (Wazo: GET /devices?search=<mac>).
    let page = s
        .list_devices_page(&ListQuery {
            search: Some("5c8e3a".into()),
            ..q()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 1);

    // No endpoint yet, then no user yet: refused.
    let e = s
        .associate_line_device(line.id, device.id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::LineNotReady {
                missing: "SIP endpoint",
                ..
            }
        ),
        "{e}"
    );
    s.associate_line_endpoint(line.id, sip.id).await.unwrap();
    s.associate_line_endpoint(line.id, sip.id).await.unwrap(); // idempotent
    let e = s
        .associate_line_device(line.id, device.id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::LineNotReady {
                missing: "user",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.http_status(), 422);
    s.associate_user_line(user.id, line.id).await.unwrap();
    s.associate_user_line(user.id, line.id).await.unwrap(); // idempotent
    let e = s.associate_user_line(user.id, 999_999).await.unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "line", .. }),
        "{e}"
    );

    let dl = s.associate_line_device(line.id, device.id).await.unwrap();
    assert_eq!((dl.position, dl.line_id), (1, Some(line.id)));
    assert_eq!(
        s.associate_line_device(line.id, device.id).await.unwrap(),
        dl,
        "idempotent"
    );
    let got = s.get_line(line.id).await.unwrap().unwrap();
    assert_eq!(got.user_ids, vec![user.id]);
    assert_eq!(got.sip_endpoint_id, Some(sip.id));
    assert_eq!(got.device_ids, vec![device.id]);
    let d = s.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(d.lines.len(), 1);
    assert_eq!(
        (d.lines[0].number.as_str(), d.lines[0].label.as_str()),
        ("1001", "Jane")
    );

    // A second line: a basic device takes one line only; an advanced one, positions unique.
    let line2 = s
        .create_line(NewLine {
            number: "1002".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let sip2 = s
        .create_sip_endpoint(NewSipEndpoint::default())
        .await
        .unwrap();
    let e = s
        .associate_line_endpoint(line2.id, sip.id)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::InUse {
                what: "SIP endpoint",
                ..
            }
        ),
        "{e}"
    );
    s.associate_line_endpoint(line2.id, sip2.id).await.unwrap();
    s.associate_user_line(user.id, line2.id).await.unwrap();
    let e = s
        .associate_line_device(line2.id, device.id)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::LineLimit { max: 1, .. }), "{e}");
    assert_eq!(e.http_status(), 409);
    let mut spec = NewDevice {
        mac: d.mac.clone(),
        model: d.model.clone(),
        device_type: DeviceType::Advanced,
        ..Default::default()
    };
    s.update_device(device.id, spec.clone()).await.unwrap();
    let e = s
        .associate_line_device_at(line2.id, device.id, Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::PositionTaken { position: 1, .. }),
        "{e}"
    );
    let e = s
        .associate_line_device_at(line2.id, device.id, Some(9))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "position",
                ..
            }
        ),
        "{e}"
    );
    let dl2 = s.associate_line_device(line2.id, device.id).await.unwrap();
    assert_eq!(dl2.position, 2);
    // Back to basic with two lines: refused.
    spec.device_type = DeviceType::Basic;
    let e = s.update_device(device.id, spec).await.unwrap_err();
    assert!(matches!(e, StoreError::LineLimit { .. }), "{e}");

    // Removing in the wrong order is refused, as in Wazo.
    let e = s.delete_sip_endpoint(sip.id).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    let e = s
        .dissociate_line_endpoint(line.id, sip.id)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InUse { what: "line", .. }), "{e}");
    assert!(s.dissociate_line_device(line.id, device.id).await.unwrap());
    assert!(!s.dissociate_line_device(line.id, device.id).await.unwrap());
    assert!(s.dissociate_line_endpoint(line.id, sip.id).await.unwrap());
    assert!(s.dissociate_user_line(user.id, line.id).await.unwrap());
    assert!(s.delete_sip_endpoint(sip.id).await.unwrap());
    // Deleting a line removes its appearances.
    assert!(s.delete_line(line2.id).await.unwrap());
    assert!(s
        .get_device(device.id)
        .await
        .unwrap()
        .unwrap()
        .lines
        .is_empty());
    assert!(s.delete_device(device.id).await.unwrap());
    assert!(s.get_device(device.id).await.unwrap().is_none());
}

pub async fn templates_refuse_bad_patterns_and_stay_consistent(t: &Ctx) {
    let s = &t.store;
    let e = s
        .create_device_template(NewDeviceTemplate {
            name: "lobby".into(),
            description_pattern: "#FirstName# #Dept#".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    match &e {
        StoreError::Invalid { field, message } => {
            assert_eq!(*field, "description_pattern");
            assert!(message.contains("#Dept#"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let e = s
        .create_line_template(NewLineTemplate {
            name: "x".into(),
            caller_id_name_pattern: "#Surname#".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "caller_id_name_pattern",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        s.list_device_templates(&q()).await.unwrap().total,
        1,
        "nothing saved"
    );

    let dt = s
        .create_device_template(NewDeviceTemplate {
            name: "lobby".into(),
            description_pattern: "Lobby #Product#".into(),
            line_keys: 2,
            locale: "fr-FR".into(),
            timezone: "Europe/Paris".into(),
            ntp_server: Some("ntp.example.com".into()),
            registrar_address: Some("pbx.example.com".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(s.get_device_template(dt.id).await.unwrap().unwrap(), dt);
    let e = s
        .create_device_template(NewDeviceTemplate {
            name: "lobby".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Duplicate { field: "name", .. }),
        "{e}"
    );
    let lt = s
        .create_line_template(NewLineTemplate {
            name: "lobby".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let e = s
        .create_user_profile(NewUserProfile {
            name: "lobby".into(),
            device_template_id: 777_777,
            line_template_id: lt.id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "device_template_id",
                ..
            }
        ),
        "{e}"
    );
    let p = s
        .create_user_profile(NewUserProfile {
            name: "lobby".into(),
            device_template_id: dt.id,
            line_template_id: lt.id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!p.spec.allow_provision, "Cisco's default: not allowed");
    assert_eq!(p.spec.max_devices, 10);
    let e = s.delete_device_template(dt.id).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    let e = s.delete_line_template(lt.id).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");
    let default = s.get_settings().await.unwrap().default_profile_id.unwrap();
    let e = s.delete_user_profile(default).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e}");

    let mut spec = dt.spec.clone();
    spec.description_pattern = "#Bad#".into();
    let e = s.update_device_template(dt.id, spec).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }), "{e}");
    let mut spec = dt.spec.clone();
    spec.line_keys = 4;
    assert_eq!(
        s.update_device_template(dt.id, spec)
            .await
            .unwrap()
            .spec
            .line_keys,
        4
    );
    let e = s
        .update_device_template(424_242, dt.spec.clone())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");

    // A profile's users fall back to the default when it goes.
    let u = s
        .create_user(UserInput {
            profile_id: Some(p.id),
            ..UserInput::from(new_user("lobby1", "5000"))
        })
        .await
        .unwrap();
    assert!(s.delete_user_profile(p.id).await.unwrap());
    assert_eq!(s.get_user(u.id).await.unwrap().unwrap().profile_id, None);
    assert!(s.delete_device_template(dt.id).await.unwrap());
    assert!(s.delete_line_template(lt.id).await.unwrap());
    assert!(!s.delete_line_template(lt.id).await.unwrap());
}

pub async fn settings_round_trip_and_are_checked(t: &Ctx) {
    let s = &t.store;
    let mut settings = s.get_settings().await.unwrap();
    settings.auth_mode = "secure-users-and-admins".into();
    settings.admin_code_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    settings.ivr_extensions = vec!["8000".into(), "8001".into()];
    settings.languages = vec!["fr-FR".into(), "en-US".into(), "de-DE".into()];
    settings.autoreg_start_dn = Some("2000".into());
    settings.autoreg_end_dn = Some("2099".into());
    settings.allow_admin_takeover = true;
    s.update_settings(settings.clone()).await.unwrap();
    let back = s.get_settings().await.unwrap();
    assert_eq!(back, settings);
    assert_eq!(back.languages[0], "fr-FR", "priority order kept");
    assert!(back.has_admin_code());
    let json = serde_json::to_string(&back).unwrap();
    assert!(!json.contains("argon2"), "{json}");

    let e = s
        .update_settings(SelfProvSettings {
            default_profile_id: Some(31_337),
            ..settings.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "default_profile_id",
                ..
            }
        ),
        "{e}"
    );
    let e = s
        .update_settings(SelfProvSettings {
            languages: (0..10).map(|i| format!("x{i}")).collect(),
            ..settings.clone()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Invalid {
                field: "languages",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        s.get_settings().await.unwrap(),
        settings,
        "refusals change nothing"
    );
}

pub async fn api_tokens_verify_and_revoke(t: &Ctx) {
    let s = &t.store;
    let (id, token) = s.create_api_token("ci pipeline").await.unwrap();
    let (id2, token2) = s.create_api_token("admin").await.unwrap();
    assert_ne!(token, token2);
    assert!(token.starts_with("spt_") && token.len() > 40, "{token}");
    assert!(s.verify_api_token(&token).await.unwrap());
    assert!(s.verify_api_token(&token2).await.unwrap());
    // One character changed, truncated, empty, or the stored hash itself: refused.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    assert!(!s
        .verify_api_token(std::str::from_utf8(&tampered).unwrap())
        .await
        .unwrap());
    assert!(!s.verify_api_token(&token[..token.len() - 1]).await.unwrap());
    assert!(!s.verify_api_token("").await.unwrap());
    let stored = t
        .count(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{token}'"
        ))
        .await;
    assert_eq!(stored, 0, "the token itself is never stored");
    let list = s.list_api_tokens().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name, "ci pipeline");
    assert!(list[0].last_used.is_some(), "use is recorded");
    assert!(s.delete_api_token(id).await.unwrap());
    assert!(!s.verify_api_token(&token).await.unwrap(), "revoked");
    assert!(s.verify_api_token(&token2).await.unwrap());
    assert!(s.delete_api_token(id2).await.unwrap());
    let e = s.create_api_token(" ").await.unwrap_err();
    assert!(
        matches!(e, StoreError::Invalid { field: "name", .. }),
        "{e}"
    );
}

pub async fn audit_is_filtered_and_paged(t: &Ctx) {
    let s = &t.store;
    add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    let before = SystemTime::now() - Duration::from_secs(1);
    for (mac, user, outcome) in [
        ("0000000000A1", Some("jdoe"), AuditOutcome::BadPin),
        ("0000000000A1", Some("jdoe"), AuditOutcome::BadPin),
        ("0000000000A2", None, AuditOutcome::UnknownUser),
        ("0000000000A1", Some("asmith"), AuditOutcome::Abandoned),
    ] {
        s.record_audit(&cisco(mac), user, Some(AuthMethod::Pin), outcome, "")
            .await
            .unwrap();
    }
    s.bind_device(&cisco("0000000000A1"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let all = s.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(all.items[0].outcome, "bound", "newest first");
    let by_user = s
        .list_audit(&AuditQuery {
            user: Some("jdoe".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_user.total, 3);
    let bad = s
        .list_audit(&AuditQuery {
            device: Some("0000000000A1".into()),
            outcome: Some("bad-pin".into()),
            limit: Some(1),
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((bad.total, bad.items.len()), (2, 1));
    assert_eq!(bad.items[0].auth_method, Some(AuthMethod::Pin));
    let none = s
        .list_audit(&AuditQuery {
            until: Some(before),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    let since = s
        .list_audit(&AuditQuery {
            since: Some(before),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.total, 5);
    // The older form: latest N as a Vec.
    let latest = s.list_audit(2).await.unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].id, all.items[0].id);
    let json = serde_json::to_value(&all.items[0]).unwrap();
    assert!(json["time"].as_str().unwrap().ends_with('Z'), "{json}");
}

pub async fn legacy_cli_methods_still_work(t: &Ctx) {
    let s = &t.store;
    s.add_user(new_user("jdoe", "1001")).await.unwrap();
    let e = s.add_user(new_user("jdoe", "1002")).await.unwrap_err();
    assert!(matches!(e, StoreError::UserExists(_)), "{e}");
    assert_eq!(s.list_users().await.unwrap().len(), 1);
    let d = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(s.list_devices().await.unwrap(), vec![d.clone()]);
    assert!(s.unbind_device(d.id, "test").await.unwrap());
    let after = s.get_device(d.id).await.unwrap().unwrap();
    assert!(after.owner.is_none() && after.lines.is_empty());
    assert!(s.remove_user("jdoe").await.unwrap());
    assert!(!s.remove_user("jdoe").await.unwrap());
}
