//! Store set-up shared by the provisioning server tests (HTTP and TFTP).

use selfprov::provisioning::DeviceIdentity;
use selfprov::store::{AuthMethod, Device, DeviceState, NewUser, Store};

/// Adds jdoe (extension 2001) and binds the phone with `mac` to her, as the IVR does; the
/// device is then `provisioning` with line 1 = 2001.
pub async fn bind_to_jdoe(store: &Store, mac: &str) -> Device {
    store
        .add_user(NewUser {
            user_id: "jdoe".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            extension: "2001".into(),
            selfprov_enabled: true,
            ..NewUser::default()
        })
        .await
        .unwrap();
    let d = store
        .bind_device(
            &DeviceIdentity {
                mac: Some(mac.into()),
                sip_identity: "7000@x".into(),
                ..Default::default()
            },
            "jdoe",
            AuthMethod::Pin,
        )
        .await
        .unwrap();
    assert_eq!(d.state, DeviceState::Provisioning);
    d
}
