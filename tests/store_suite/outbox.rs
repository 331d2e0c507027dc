//! The PBX outbox on either backend: rows written in the binding's own transaction (and never
//! by a binding that failed), a phone's unbinding revoking its line's password without
//! dropping the line while another phone has it, and the delivery bookkeeping (back-off,
//! parking, retry, status).

use super::{add_user, cisco, Ctx};
use selfprov::pbx::event::PbxEvent;
use selfprov::store::{AuthMethod, Store};

const CONNECTORS: [&str; 2] = ["kam", "hook"];

fn with_connectors(s: &Store) -> Store {
    s.clone()
        .with_pbx_connectors(CONNECTORS.iter().map(|c| c.to_string()).collect())
}

/// The connector's rows, oldest first, as event names.
async fn events(s: &Store, connector: &str) -> Vec<PbxEvent> {
    s.outbox_rows(connector, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

pub async fn binding_writes_outbox_rows_for_every_connector(t: &Ctx) {
    let s = with_connectors(&t.store);
    add_user(&s, "jdoe", "Jane", "Doe", "1001").await;
    let a = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    for c in CONNECTORS {
        let ev = events(&s, c).await;
        assert_eq!(ev.len(), 2, "{c}: {ev:?}");
        let PbxEvent::LineUpserted(line) = &ev[0] else {
            panic!("{c}: first event {ev:?}")
        };
        assert_eq!(line.number, "1001");
        assert_eq!(line.device_ids, vec![a.id]);
        assert_eq!(line.password.len(), 24);
        let PbxEvent::DeviceBound(d) = &ev[1] else {
            panic!("{c}: second event {ev:?}")
        };
        assert_eq!(d.device_id, a.id);
        assert_eq!(d.user_id.as_deref(), Some("jdoe"));
        assert_eq!(d.mac.as_deref(), Some("0022905C8E3A"));
        let st = s.pbx_status(c).await.unwrap();
        assert_eq!((st.pending, st.parked, st.delivered), (2, 0, 0));
        assert!(st.oldest_pending_at.is_some());
    }
    // A store without connectors (the default) writes no rows.
    add_user(&t.store, "asmith", "Alice", "Smith", "1002").await;
    t.store
        .bind_device(&cisco("0022905C8E3B"), "asmith", AuthMethod::Pin)
        .await
        .unwrap();
    assert_eq!(t.count("SELECT COUNT(*) FROM pbx_outbox").await, 4);
}

pub async fn unbinding_revokes_the_phones_credentials_only(t: &Ctx) {
    let s = with_connectors(&t.store);
    add_user(&s, "jdoe", "Jane", "Doe", "1001").await;
    let a = s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let b = s
        .bind_device(&cisco("0022905C8E3B"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let line_id = a.lines[0].line_id.unwrap();
    assert_eq!(
        b.lines[0].line_id,
        Some(line_id),
        "the user's phones share the line"
    );
    let sip_id = s
        .get_line(line_id)
        .await
        .unwrap()
        .unwrap()
        .sip_endpoint_id
        .unwrap();
    let before = s.get_sip_endpoint(sip_id).await.unwrap().unwrap().password;
    let skip = events(&s, "kam").await.len();

    // A goes: the line stays live for B, with a new password; B needs a resync.
    let others = s.unbind_device_resync(a.id, "test").await.unwrap().unwrap();
    assert_eq!(others, vec![b.id]);
    let after = s.get_sip_endpoint(sip_id).await.unwrap().unwrap().password;
    assert_ne!(
        before, after,
        "the unbound phone's password no longer works"
    );
    let ev = events(&s, "kam").await;
    let new = &ev[skip..];
    assert_eq!(new.len(), 2, "{new:?}");
    let PbxEvent::DeviceUnbound(d) = &new[0] else {
        panic!("{new:?}")
    };
    assert_eq!((d.device_id, d.line_ids.clone()), (a.id, vec![line_id]));
    assert_eq!(d.user_id.as_deref(), Some("jdoe"));
    let PbxEvent::LineUpserted(line) = &new[1] else {
        panic!("{new:?}")
    };
    assert_eq!(line.device_ids, vec![b.id]);
    assert_eq!(line.password, after);

    // B goes too: the line is no longer live anywhere.
    let others = s.unbind_device_resync(b.id, "test").await.unwrap().unwrap();
    assert!(others.is_empty());
    let ev = events(&s, "kam").await;
    assert!(
        matches!(ev.last(), Some(PbxEvent::LineDeleted { line_id: l, number: Some(n) }) if *l == line_id && n == "1001"),
        "{ev:?}"
    );
    // Reset to autoprov and user removal are unbindings too.
    let c = s
        .bind_device(&cisco("0022905C8E3C"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let n = events(&s, "kam").await.len();
    assert!(s.remove_user("jdoe").await.unwrap());
    let ev = events(&s, "kam").await;
    assert!(
        matches!(&ev[n..], [PbxEvent::DeviceUnbound(d), PbxEvent::LineDeleted { .. }] if d.device_id == c.id),
        "{:?}",
        &ev[n..]
    );
}

pub async fn a_failed_binding_writes_no_outbox_row(t: &Ctx) {
    let s = with_connectors(&t.store);
    add_user(&s, "jdoe", "Jane", "Doe", "1001").await;
    t.break_inserts("pbx_outbox").await;
    assert!(s
        .bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .is_err());
    t.repair_inserts("pbx_outbox").await;
    assert_eq!(t.count("SELECT COUNT(*) FROM pbx_outbox").await, 0);
    assert_eq!(
        t.count("SELECT COUNT(*) FROM devices WHERE owner_id IS NOT NULL")
            .await,
        0,
        "the binding and its outbox rows commit together or not at all"
    );
}

pub async fn delivery_bookkeeping(t: &Ctx) {
    let s = with_connectors(&t.store);
    add_user(&s, "jdoe", "Jane", "Doe", "1001").await;
    s.bind_device(&cisco("0022905C8E3A"), "jdoe", AuthMethod::Pin)
        .await
        .unwrap();
    let first = s.outbox_next("kam").await.unwrap().unwrap();
    assert!(matches!(first.event, PbxEvent::LineUpserted(_)));
    // A retry keeps the row at the head, later.
    s.outbox_failed("kam", first.id, "connection refused", i64::MAX / 2, false)
        .await
        .unwrap();
    let again = s.outbox_next("kam").await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (first.id, 1));
    assert_eq!(again.last_error.as_deref(), Some("connection refused"));
    // Parked: out of the way, counted, kept.
    s.outbox_failed("kam", first.id, "refused", 0, true)
        .await
        .unwrap();
    let next = s.outbox_next("kam").await.unwrap().unwrap();
    assert!(matches!(next.event, PbxEvent::DeviceBound(_)));
    let st = s.pbx_status("kam").await.unwrap();
    assert_eq!((st.pending, st.parked), (1, 1));
    assert_eq!(st.last_error.as_deref(), Some("refused"));
    s.outbox_delivered("kam", next.id).await.unwrap();
    let st = s.pbx_status("kam").await.unwrap();
    assert_eq!((st.pending, st.parked, st.delivered), (0, 1, 1));
    assert!(st.last_success_at.is_some());
    // Retry puts the parked row back at the head, attempts reset.
    assert_eq!(s.outbox_retry_parked("kam").await.unwrap(), 1);
    let back = s.outbox_next("kam").await.unwrap().unwrap();
    assert_eq!(
        (back.id, back.attempts, back.parked_at),
        (first.id, 0, None)
    );
    // The other connector is untouched by all this.
    assert_eq!(s.pbx_status("hook").await.unwrap().pending, 2);
    // Ownership records.
    s.set_pbx_object("kam", 7, Some("1001@example.com"))
        .await
        .unwrap();
    assert_eq!(
        s.pbx_object("kam", 7).await.unwrap().as_deref(),
        Some("1001@example.com")
    );
    assert_eq!(s.pbx_objects("kam").await.unwrap().len(), 1);
    s.set_pbx_object("kam", 7, None).await.unwrap();
    assert!(s.pbx_objects("kam").await.unwrap().is_empty());
    assert_eq!(s.live_lines().await.unwrap().len(), 1);
}
