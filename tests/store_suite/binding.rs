//! Binding a phone (issue 3 "What binding does"), on either backend: templates applied, each
//! refusal path with its audit event, idempotence, takeover, concurrency, rollback.

use super::{add_user, cisco, Ctx};
use selfprov::store::{
    AuditQuery, AuthMethod, BindOptions, CallForward, DeviceState, ListQuery, NewDeviceTemplate,
    NewLine, NewLineTemplate, NewUserProfile, SecurityProfile, Store, StoreError, Transport,
    UserInput,
};

async fn audit_outcomes(s: &Store) -> Vec<String> {
    s.list_audit(&AuditQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.outcome)
        .collect()
}

async fn counts(t: &Ctx) -> [i64; 5] {
    [
        t.count("SELECT COUNT(*) FROM devices").await,
        t.count("SELECT COUNT(*) FROM lines").await,
        t.count("SELECT COUNT(*) FROM sip_endpoints").await,
        t.count("SELECT COUNT(*) FROM device_lines").await,
        t.count("SELECT COUNT(*) FROM user_lines").await,
    ]
}

/// A profile of its own, with templates whose patterns differ from the defaults.
async fn custom_profile(s: &Store, max_devices: u32, allow: bool) -> NewUserProfile {
    let dt = s
        .create_device_template(NewDeviceTemplate {
            name: format!("desk-{max_devices}-{allow}"),
            description_pattern: "#LastName#, #FirstName# - #Product# #Protocol# (#UserID#)".into(),
            security: SecurityProfile {
                transport: Transport::Tls,
                digest_required: true,
                tls: true,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let cf = selfprov::store::CallForwards {
        no_answer: CallForward {
            destination: Some("8500".into()),
            enabled: true,
        },
        ..Default::default()
    };
    let lt = s
        .create_line_template(NewLineTemplate {
            name: format!("desk-{max_devices}-{allow}"),
            caller_id_name_pattern: "#LastName# #FirstName#".into(),
            label_pattern: "#Extension# #UserID#".into(),
            context: "office".into(),
            voicemail_enabled: true,
            call_forward: cf,
            max_calls: 6,
            busy_trigger: 3,
        })
        .await
        .unwrap();
    NewUserProfile {
        name: format!("desk-{max_devices}-{allow}"),
        description: String::new(),
        device_template_id: dt.id,
        line_template_id: lt.id,
        allow_provision: allow,
        max_devices,
    }
}

async fn user_with_profile(s: &Store, user_id: &str, ext: &str, p: NewUserProfile) -> i64 {
    let p = s.create_user_profile(p).await.unwrap();
    s.create_user(UserInput {
        user_id: user_id.into(),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        extension: ext.into(),
        selfprov_enabled: true,
        profile_id: Some(p.id),
        ..Default::default()
    })
    .await
    .unwrap()
    .id
}

pub async fn binding_builds_line_and_device_from_templates(t: &Ctx) {
    let s = &t.store;
    let profile = custom_profile(s, 10, true).await;
    let uid = user_with_profile(s, "jdoe", "1001", profile).await;
    let b = s
        .bind_device_with(
            &cisco("0022905C8E3A"),
            "jdoe",
            AuthMethod::Pin,
            &BindOptions::default(),
        )
        .await
        .unwrap();
    // The line: from the line template, patterns expanded.
    assert_eq!(b.line.spec.number, "1001");
    assert_eq!(b.line.spec.context, "office");
    assert_eq!(b.line.spec.caller_id_name, "Doe Jane");
    assert_eq!(b.line.spec.label, "1001 jdoe");
    assert_eq!(b.line.spec.voicemail.as_deref(), Some("1001"));
    assert_eq!(
        b.line.spec.call_forward.no_answer.destination.as_deref(),
        Some("8500")
    );
    assert_eq!((b.line.spec.max_calls, b.line.spec.busy_trigger), (6, 3));
    assert_eq!(b.line.user_ids, vec![uid]);
    assert_eq!(b.line.device_ids, vec![b.device.id]);
    // Its SIP endpoint: generated, with the device template's security profile.
    assert_eq!(b.line.sip_endpoint_id, Some(b.sip_endpoint.id));
    assert_eq!(b.sip_endpoint.password.len(), 24);
    assert_eq!(b.sip_endpoint.transport, Transport::Tls);
    assert!(b.sip_endpoint.digest_required);
    // The device: from the device template, line 1, owner, state.
    assert_eq!(
        b.device.description, "Doe, Jane - CP-8851 SIP (jdoe)",
        "#Product# = model, #Protocol# = SIP"
    );
    assert_eq!(b.device.template_id, Some(b.device_template.id));
    assert_eq!(b.device.owner.as_deref(), Some("jdoe"));
    assert_eq!(b.device.owner_id, Some(uid));
    assert_eq!(b.device.state, DeviceState::Provisioning);
    assert_eq!(b.device.lines.len(), 1);
    assert_eq!(b.device.lines[0].position, 1);
    assert_eq!(b.device.lines[0].line_id, Some(b.line.id));
    assert_eq!(b.device.lines[0].label, "1001 jdoe");
    assert!(b.taken_over_from.is_none());
    // Audited with how the caller authenticated.
    let audit = s.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(audit.total, 1);
    assert_eq!(audit.items[0].outcome, "bound");
    assert_eq!(audit.items[0].auth_method, Some(AuthMethod::Pin));
    assert_eq!(audit.items[0].device_id, Some(b.device.id));
    assert_eq!(audit.items[0].user_id.as_deref(), Some("jdoe"));

    // The default profile (user without one): the seeded CUCM-style templates.
    add_user(s, "asmith", "Alice", "Smith", "1002").await;
    let d = s
        .bind_device(&cisco("0022905C8E3B"), "asmith", AuthMethod::None)
        .await
        .unwrap();
    assert_eq!(d.description, "Alice Smith (CP-8851 SIP)");
    let line = s
        .get_line(d.lines[0].line_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.spec.caller_id_name, "Alice Smith");
    assert_eq!(line.spec.label, "1002 - Alice");
}

pub async fn binding_again_is_idempotent(t: &Ctx) {
    let s = &t.store;
    add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    let phone = cisco("0022905C8E3A");
    let opts = BindOptions::default();
    let first = s
        .bind_device_with(&phone, "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap();
    let before = counts(t).await;
    assert_eq!(before, [1, 1, 1, 1, 1]);
    s.set_device_state(first.device.id, DeviceState::Provisioned)
        .await
        .unwrap();
    let again = s
        .bind_device_with(&phone, "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap();
    assert_eq!(counts(t).await, before, "nothing new is created");
    assert_eq!(again.device.id, first.device.id);
    assert_eq!(again.line, first.line);
    assert_eq!(again.sip_endpoint, first.sip_endpoint, "same credentials");
    assert_eq!(again.device.lines, first.device.lines);
    assert_eq!(again.device.state, DeviceState::Provisioning);
    assert_eq!(audit_outcomes(s).await, ["bound", "bound"]);

    // A second phone of the same user shares the user's line (one line, two appearances).
    let other = s
        .bind_device_with(&cisco("0022905C8E3B"), "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap();
    assert_eq!(other.line.id, first.line.id);
    assert_eq!(other.line.device_ids.len(), 2);
    assert_eq!(counts(t).await, [2, 1, 1, 2, 1]);
}

pub async fn phone_of_another_user_is_refused_or_taken_over(t: &Ctx) {
    let s = &t.store;
    add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    add_user(s, "asmith", "Alice", "Smith", "1002").await;
    let phone = cisco("0022905C8E3A");
    let allow = BindOptions {
        allow_takeover: true,
    };
    let deny = BindOptions::default();
    let first = s
        .bind_device_with(&phone, "jdoe", AuthMethod::Pin, &allow)
        .await
        .unwrap();
    let before = counts(t).await;
    // The user's PIN never takes a phone over; the admin code only when allowed.
    for (auth, opts) in [
        (AuthMethod::Pin, &allow),
        (AuthMethod::None, &allow),
        (AuthMethod::AdminCode, &deny),
    ] {
        let e = s
            .bind_device_with(&phone, "asmith", auth, opts)
            .await
            .unwrap_err();
        match &e {
            StoreError::AlreadyBound { device, owner } => {
                assert_eq!((device.as_str(), owner.as_str()), ("0022905C8E3A", "jdoe"))
            }
            other => panic!("{auth:?}: {other:?}"),
        }
        assert!(e.is_conflict());
    }
    assert_eq!(counts(t).await, before, "refusals write nothing but audit");
    let d = s.get_device(first.device.id).await.unwrap().unwrap();
    assert_eq!(d.owner.as_deref(), Some("jdoe"));
    let refused = s
        .list_audit(&AuditQuery {
            outcome: Some("already-bound".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.total, 3);
    assert_eq!(refused.items[0].user_id.as_deref(), Some("asmith"));
    assert_eq!(refused.items[0].device_id, Some(first.device.id));

    let taken = s
        .bind_device_with(&phone, "asmith", AuthMethod::AdminCode, &allow)
        .await
        .unwrap();
    assert_eq!(taken.taken_over_from.as_deref(), Some("jdoe"));
    assert_eq!(taken.device.id, first.device.id);
    assert_eq!(taken.device.owner.as_deref(), Some("asmith"));
    assert_eq!(
        taken.device.lines.len(),
        1,
        "jdoe's line is gone from the phone"
    );
    assert_eq!(taken.device.lines[0].number, "1002");
    assert_eq!(taken.device.description, "Alice Smith (CP-8851 SIP)");
    let ev = s.list_audit(1).await.unwrap();
    assert_eq!(ev[0].outcome, "takeover");
    assert_eq!(ev[0].auth_method, Some(AuthMethod::AdminCode));
    assert!(ev[0].detail.contains("jdoe"), "{}", ev[0].detail);

    // bind_device (the IVR's call) follows the settings' allow_admin_takeover.
    let e = s
        .bind_device(&phone, "jdoe", AuthMethod::AdminCode)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::AlreadyBound { .. }), "{e}");
    let mut settings = s.get_settings().await.unwrap();
    settings.allow_admin_takeover = true;
    s.update_settings(settings).await.unwrap();
    let d = s
        .bind_device(&phone, "jdoe", AuthMethod::AdminCode)
        .await
        .unwrap();
    assert_eq!(d.owner.as_deref(), Some("jdoe"));
}

pub async fn device_limit_is_enforced(t: &Ctx) {
    let s = &t.store;
    let profile = custom_profile(s, 1, true).await;
    user_with_profile(s, "jdoe", "1001", profile).await;
    let opts = BindOptions::default();
    s.bind_device_with(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap();
    let before = counts(t).await;
    let e = s
        .bind_device_with(&cisco("0022905C8E3B"), "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::DeviceLimit { max: 1, .. }), "{e}");
    assert_eq!(e.http_status(), 409);
    assert_eq!(
        counts(t).await,
        before,
        "the second phone is not even recorded"
    );
    assert_eq!(audit_outcomes(s).await[0], "device-limit");
    // Re-provisioning the phone the user already has is not a new device.
    s.bind_device_with(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin, &opts)
        .await
        .unwrap();
    // A limit of 0 refuses every phone.
    let zero = custom_profile(s, 0, true).await;
    user_with_profile(s, "zero", "1009", zero).await;
    let e = s
        .bind_device_with(&cisco("0022905C8E3C"), "zero", AuthMethod::Pin, &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::DeviceLimit { max: 0, .. }), "{e}");
}

pub async fn profile_must_allow_provisioning(t: &Ctx) {
    let s = &t.store;
    let profile = custom_profile(s, 10, false).await;
    user_with_profile(s, "jdoe", "1001", profile).await;
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::ProvisionNotAllowed { .. }), "{e}");
    assert_eq!(counts(t).await, [0, 0, 0, 0, 0]);
    assert_eq!(audit_outcomes(s).await, ["not-allowed"]);

    // No profile and no default profile: refused too.
    add_user(s, "asmith", "Alice", "Smith", "1002").await;
    let mut settings = s.get_settings().await.unwrap();
    settings.default_profile_id = None;
    s.update_settings(settings).await.unwrap();
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "asmith", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoProfile(_)), "{e}");
    assert_eq!(counts(t).await, [0, 0, 0, 0, 0]);
}

pub async fn unknown_or_disabled_users_bind_nothing(t: &Ctx) {
    let s = &t.store;
    s.create_user(UserInput {
        user_id: "off".into(),
        extension: "1003".into(),
        selfprov_enabled: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "ghost", AuthMethod::None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownUser(_)), "{e}");
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "off", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::UserDisabled(_)), "{e}");
    assert_eq!(counts(t).await, [0, 0, 0, 0, 0]);
    assert_eq!(audit_outcomes(s).await, ["user-disabled", "unknown-user"]);
}

pub async fn concurrent_binding_of_one_phone_has_one_winner(t: &Ctx) {
    let a = t.store.clone();
    let b = t.open_again().await;
    add_user(&a, "jdoe", "Jane", "Doe", "1001").await;
    add_user(&a, "asmith", "Alice", "Smith", "1002").await;
    for round in 0..3u8 {
        let mac = format!("00AA00BB00C{round}");
        let (r1, r2) = tokio::join!(
            tokio::spawn({
                let (a, id) = (a.clone(), cisco(&mac));
                async move { a.bind_device(&id, "jdoe", AuthMethod::Pin).await }
            }),
            tokio::spawn({
                let (b, id) = (b.clone(), cisco(&mac));
                async move { b.bind_device(&id, "asmith", AuthMethod::Pin).await }
            }),
        );
        let results = [r1.unwrap(), r2.unwrap()];
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(matches!(loser, StoreError::AlreadyBound { .. }), "{loser}");
        let winner = winners[0];
        let d = a.get_device(winner.id).await.unwrap().unwrap();
        assert_eq!(d.lines.len(), 1, "one line 1, of the winner");
        let line = a
            .get_line(d.lines[0].line_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.spec.number, d.lines[0].number);
        assert_eq!(line.user_ids, vec![winner.owner_id.unwrap()]);
    }
    let devices = a.list_devices_page(&ListQuery::default()).await.unwrap();
    assert_eq!(devices.total, 3, "one row per phone");
    let lines = t.count("SELECT COUNT(*) FROM device_lines").await;
    assert_eq!(lines, 3);
    // Each user's line exists at most once, whoever won which round.
    assert!(t.count("SELECT COUNT(*) FROM lines").await <= 2);
    assert_eq!(
        t.count(
            "SELECT COUNT(*) FROM lines l WHERE NOT EXISTS \
             (SELECT 1 FROM line_endpoints le WHERE le.line_id = l.id)"
        )
        .await,
        0,
        "every line has its endpoint"
    );
    b.close().await;
}

pub async fn failure_mid_binding_leaves_nothing(t: &Ctx) {
    let s = &t.store;
    add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    // The device_lines insert comes last: line, endpoint and device are written by then.
    t.break_inserts("device_lines").await;
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Database(_)), "{e}");
    assert_eq!(counts(t).await, [0, 0, 0, 0, 0], "rolled back as a whole");
    assert_eq!(t.count("SELECT COUNT(*) FROM audit_events").await, 0);
    t.repair_inserts("device_lines").await;
    let d = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(d.lines.len(), 1);
    assert_eq!(counts(t).await, [1, 1, 1, 1, 1]);
}

pub async fn extension_line_of_another_user_is_refused(t: &Ctx) {
    let s = &t.store;
    let jdoe = add_user(s, "jdoe", "Jane", "Doe", "1001").await;
    // An admin gave line 1001 to someone else by hand.
    let other = add_user(s, "asmith", "Alice", "Smith", "1002").await;
    let line = s
        .create_line(NewLine {
            number: "1001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.associate_user_line(other.id, line.id).await.unwrap();
    let before = counts(t).await;
    let e = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InUse { what: "line", .. }), "{e}");
    assert_eq!(counts(t).await, before);
    // An unassigned line for the extension is reused, not duplicated.
    s.dissociate_user_line(other.id, line.id).await.unwrap();
    let b = s
        .bind_device_with(
            &cisco("0022905C8E3A"),
            "jdoe",
            AuthMethod::Pin,
            &BindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(b.line.id, line.id);
    assert_eq!(b.line.user_ids, vec![jdoe.id]);
}
