//! The admin REST API: JSON over HTTP under `/api/v1`, bearer-token authentication, an OpenAPI
//! document at `/api/v1/openapi.json`. Routes follow Wazo's conventions.
//!
//! [`router`] builds the routes and the OpenAPI document from the same handler list
//! (utoipa-axum's `routes!`), so the document cannot drift from what is served; the API tests
//! check that both match the routes the issue asks for. [`serve`] runs it on a listener.
//!
//! Conventions (docs/api.md has the full reference): every route but the OpenAPI document needs
//! a token ([`auth`]); lists take `limit`, `offset`, `order`, `direction`, `search` and answer
//! `{"total": N, "items": [...]}` ([`list`]); errors are `{"message", "field"?}` ([`error`]);
//! `POST` answers 201 with the new resource, `PUT` and `DELETE` 204.
//!
//! The same listener serves `GET /metrics` (outside `/api/v1`, no token): the Prometheus
//! metrics of [`crate::metrics`].

mod crud;

pub mod audit;
pub mod auth;
pub mod devices;
pub mod error;
pub mod langpacks;
pub mod lines;
pub mod list;
pub mod pbx;
pub mod schema;
pub mod settings;
pub mod templates;
pub mod users;

pub use crud::Record;

pub use error::{path_id, ApiError, ErrorBody};

use crate::store::Store;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Router};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub store: Store,
    /// Queues a device's resync NOTIFY in the running server; None in the CLI (no SIP there).
    pub resync: Option<tokio::sync::mpsc::UnboundedSender<i64>>,
    /// Asks the running server to reload its language packs; None in the CLI.
    pub reload: Option<crate::server::prompts::ReloadSender>,
    /// The configured PBX connectors (`[[pbx]]`).
    pub pbx: PbxList,
    /// The language packs folder (`langpacks.dir`): `languages` naming a pack not installed
    /// there are refused. None: not checked (tests of the API alone).
    pub langpacks: Option<std::path::PathBuf>,
}

/// The configured PBX connectors, shared by the handlers.
#[derive(Clone, Default)]
pub struct PbxList(pub Arc<Vec<Arc<crate::pbx::Pbx>>>);

impl std::fmt::Debug for PbxList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.name()))
            .finish()
    }
}

impl ApiState {
    pub fn new(store: Store) -> Self {
        ApiState {
            store,
            resync: None,
            reload: None,
            pbx: PbxList::default(),
            langpacks: None,
        }
    }

    /// Settings naming a language pack that is not installed in `dir` are refused.
    pub fn with_langpacks(mut self, dir: std::path::PathBuf) -> Self {
        self.langpacks = Some(dir);
        self
    }

    /// The connectors `/pbx` reports on and syncs.
    pub fn with_pbx(mut self, pbx: Vec<Arc<crate::pbx::Pbx>>) -> Self {
        self.pbx = PbxList(Arc::new(pbx));
        self
    }

    /// The state of the server's API: resyncs go to the server's resync task.
    pub fn with_resync(mut self, resync: tokio::sync::mpsc::UnboundedSender<i64>) -> Self {
        self.resync = Some(resync);
        self
    }

    /// The state of the server's API: `POST /langpacks/reload` reaches the server's packs.
    pub fn with_reload(mut self, reload: crate::server::prompts::ReloadSender) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Whether `token` grants access: one the store issued (`selfprov token create`) and that
    /// was not revoked.
    pub async fn verify_token(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.store.verify_api_token(token).await?)
    }
}

/// The OpenAPI document's fixed parts; the paths and schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "selfprov admin API",
        description = "Users, lines, SIP endpoints, devices, templates, profiles, settings and \
                       the audit trail of the selfprov self-provisioning IVR. Wazo-style routes; \
                       bearer-token authentication.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "users", description = "People who may self-provision a phone"),
        (name = "lines", description = "Lines (directory numbers) and their associations"),
        (name = "endpoints", description = "SIP endpoints: the credentials of a line"),
        (name = "devices", description = "Phones"),
        (name = "templates", description = "Universal device and line templates"),
        (name = "user-profiles", description = "Which templates apply to a user, and provisioning limits"),
        (name = "settings", description = "Self-provisioning settings"),
        (name = "audit", description = "The self-provisioning audit trail"),
        (name = "pbx", description = "Call-control connectors: what reaches the site's PBX"),
        (name = "api", description = "This document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `selfprov token create --config PATH` \
                         (`X-Auth-Token: <token>` is accepted too)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The prefix of every route.
pub const PREFIX: &str = "/api/v1";

/// The OpenAPI document of the API (the one `GET /api/v1/openapi.json` serves).
pub fn openapi() -> OpenApiDoc {
    let (protected, public) = routes();
    assemble(protected, public).1
}

/// The API's routes, with `state`. Serve it with [`serve`] or nest it in a larger router.
pub fn router(state: ApiState) -> Router {
    build_router(state, true)
}

/// The same routes without the token check, for in-process callers that already hold the
/// store (the `selfprov` admin commands, which reach the store through the config file). Never
/// serve this on a socket.
pub(crate) fn router_without_auth(state: ApiState) -> Router {
    build_router(state, false)
}

fn build_router(state: ApiState, auth: bool) -> Router {
    let (protected, public) = routes();
    // `route_layer`: the token check runs only for a matched route, so an unknown path is a
    // 404 whether or not a token came with it.
    let protected = if auth {
        protected.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    } else {
        protected
    };
    let (router, doc) = assemble(protected, public);
    let json = doc
        .to_json()
        .unwrap_or_else(|e| format!("{{\"message\": \"OpenAPI document failed: {e}\"}}"));
    router
        .route("/metrics", axum::routing::get(metrics))
        .layer(Extension(OpenApiJson(Arc::new(json))))
        .with_state(state)
        .layer(axum::middleware::from_fn(json_405))
}

#[derive(Clone)]
struct OpenApiJson(Arc<String>);

/// The handlers: those needing a token, and the public ones. Paths are relative to [`PREFIX`].
fn routes() -> (OpenApiRouter<ApiState>, OpenApiRouter<ApiState>) {
    let protected = OpenApiRouter::<ApiState>::new()
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(
            users::get_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::import_users))
        .routes(routes!(lines::list_lines, lines::create_line))
        .routes(routes!(
            lines::get_line,
            lines::update_line,
            lines::delete_line
        ))
        .routes(routes!(
            lines::list_sip_endpoints,
            lines::create_sip_endpoint
        ))
        .routes(routes!(
            lines::get_sip_endpoint,
            lines::update_sip_endpoint,
            lines::delete_sip_endpoint
        ))
        .routes(routes!(
            lines::associate_user_line,
            lines::dissociate_user_line
        ))
        .routes(routes!(
            lines::associate_line_endpoint,
            lines::dissociate_line_endpoint
        ))
        .routes(routes!(
            lines::associate_line_device,
            lines::dissociate_line_device
        ))
        .routes(routes!(devices::list_devices, devices::create_device))
        .routes(routes!(
            devices::get_device,
            devices::update_device,
            devices::delete_device
        ))
        .routes(routes!(devices::resync_device))
        .routes(routes!(devices::autoprov_device))
        .routes(routes!(langpacks::reload_langpacks))
        .routes(routes!(
            templates::list_device_templates,
            templates::create_device_template
        ))
        .routes(routes!(
            templates::get_device_template,
            templates::update_device_template,
            templates::delete_device_template
        ))
        .routes(routes!(
            templates::list_line_templates,
            templates::create_line_template
        ))
        .routes(routes!(
            templates::get_line_template,
            templates::update_line_template,
            templates::delete_line_template
        ))
        .routes(routes!(
            templates::list_user_profiles,
            templates::create_user_profile
        ))
        .routes(routes!(
            templates::get_user_profile,
            templates::update_user_profile,
            templates::delete_user_profile
        ))
        .routes(routes!(settings::get_settings, settings::update_settings))
        .routes(routes!(audit::list_audit))
        .routes(routes!(pbx::list_pbx))
        .routes(routes!(pbx::sync_pbx))
        .routes(routes!(pbx::retry_pbx));
    let public = OpenApiRouter::<ApiState>::new().routes(routes!(openapi_json));
    (protected, public)
}

fn assemble(
    protected: OpenApiRouter<ApiState>,
    public: OpenApiRouter<ApiState>,
) -> (Router<ApiState>, OpenApiDoc) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(PREFIX, protected.merge(public))
        .fallback(not_found)
        .split_for_parts()
}

/// The OpenAPI document (public, like Wazo's, so tools can read it before holding a token).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "api",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json(Extension(OpenApiJson(json)): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json.as_str().to_string(),
    )
}

/// `GET /metrics`: the process's metrics for a Prometheus scraper ([`crate::metrics`]). Outside
/// [`PREFIX`] and without a token, as scrapers expect: the admin listener is kept off the
/// phones' network, and the metrics hold counts only (no user, number or address).
async fn metrics() -> impl IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            ),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        crate::metrics::global().encode(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route: GET /api/v1/openapi.json lists the routes")
}

/// Turns axum's empty 405 answers into JSON errors.
async fn json_405(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none()
    {
        let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
        let mut out = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on this route"),
        )
        .into_response();
        if let Some(allow) = allow {
            out.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
        return out;
    }
    resp
}

/// Serves the API on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) -> anyhow::Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
