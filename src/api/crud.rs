//! The five handlers of a Wazo-style resource (list, create, get, update, delete), generated
//! for each resource whose store methods follow the `list_R(&ListQuery)`, `get_R(id)`,
//! `create_R(NewR)`, `update_R(id, NewR)`, `delete_R(id)` pattern.
//!
//! A resource module provides an input type (`$In`: the fields a client sets, `Default` = the
//! store's defaults, convertible from the stored record and into the store's `NewR`) and an
//! output type implementing [`Record`]. `PUT` is a partial update: the stored record is read,
//! converted to `$In`, the body's fields applied ([`super::schema::apply_put`]), and the whole
//! written back.

/// Turns a stored record into the API's view of it.
pub trait Record<R> {
    /// The record as `GET /R/{id}` and `POST /R` show it.
    fn full(r: &R) -> Self;
    /// The record as lists show it (the default: the same).
    fn summary(r: &R) -> Self
    where
        Self: Sized,
    {
        Self::full(r)
    }
    /// Adjusts a list query before the store runs it (the default: unchanged).
    fn adjust_query(_q: &mut crate::store::ListQuery) {}
}

macro_rules! crud {
    (
        tag: $tag:tt,
        collection: $coll:tt,
        item: $item:tt,
        id: $id:tt,
        what: $what:tt,
        record: $Rec:ty,
        new: $New:ty,
        input: $In:ident,
        output: $Out:ident,
        store: [$list:ident, $get:ident, $create:ident, $update:ident, $delete:ident],
        docs: [$list_doc:tt, $create_doc:tt, $get_doc:tt, $update_doc:tt, $delete_doc:tt $(,)?],
        handlers: [$list_fn:ident, $create_fn:ident, $get_fn:ident, $update_fn:ident, $delete_fn:ident] $(,)?
    ) => {
        #[doc = $list_doc]
        #[utoipa::path(
            get,
            path = $coll,
            tag = $tag,
            params(crate::api::list::ListParams),
            responses(
                (status = 200, description = "One page", body = crate::api::list::Page<$Out>),
                (status = 400, description = "Bad list parameter", body = crate::api::error::ErrorBody),
                (status = 401, description = "No valid token", body = crate::api::error::ErrorBody),
            )
        )]
        pub async fn $list_fn(
            axum::extract::State(state): axum::extract::State<crate::api::ApiState>,
            crate::api::error::QueryParams(params): crate::api::error::QueryParams<
                crate::api::list::ListParams,
            >,
        ) -> Result<axum::Json<crate::api::list::Page<$Out>>, crate::api::error::ApiError> {
            let mut query = params.to_query();
            <$Out as crate::api::crud::Record<$Rec>>::adjust_query(&mut query);
            let page = state.store.$list(&query).await?;
            Ok(axum::Json(crate::api::list::Page::from_store(
                page,
                <$Out as crate::api::crud::Record<$Rec>>::summary,
            )))
        }

        #[doc = $create_doc]
        #[utoipa::path(
            post,
            path = $coll,
            tag = $tag,
            request_body = $In,
            responses(
                (status = 201, description = "Created", body = $Out),
                (status = 400, description = "Body is not valid JSON", body = crate::api::error::ErrorBody),
                (status = 401, description = "No valid token", body = crate::api::error::ErrorBody),
                (status = 409, description = "A unique field is taken", body = crate::api::error::ErrorBody),
                (status = 422, description = "A field is invalid", body = crate::api::error::ErrorBody),
            )
        )]
        pub async fn $create_fn(
            axum::extract::State(state): axum::extract::State<crate::api::ApiState>,
            crate::api::error::JsonBody(body): crate::api::error::JsonBody<$In>,
        ) -> Result<(axum::http::StatusCode, axum::Json<$Out>), crate::api::error::ApiError> {
            let new: $New = body.try_into()?;
            let created = state.store.$create(new).await?;
            Ok((
                axum::http::StatusCode::CREATED,
                axum::Json(<$Out as crate::api::crud::Record<$Rec>>::full(&created)),
            ))
        }

        #[doc = $get_doc]
        #[utoipa::path(
            get,
            path = $item,
            tag = $tag,
            params(($id = i64, Path, description = "The ID")),
            responses(
                (status = 200, description = "Found", body = $Out),
                (status = 400, description = "The ID is not a number", body = crate::api::error::ErrorBody),
                (status = 401, description = "No valid token", body = crate::api::error::ErrorBody),
                (status = 404, description = "Not found", body = crate::api::error::ErrorBody),
            )
        )]
        pub async fn $get_fn(
            axum::extract::State(state): axum::extract::State<crate::api::ApiState>,
            crate::api::error::PathParams(id): crate::api::error::PathParams<String>,
        ) -> Result<axum::Json<$Out>, crate::api::error::ApiError> {
            let id = crate::api::error::path_id($id, &id)?;
            match state.store.$get(id).await? {
                Some(r) => Ok(axum::Json(<$Out as crate::api::crud::Record<$Rec>>::full(&r))),
                None => Err(crate::api::error::not_found_id($what, id)),
            }
        }

        #[doc = $update_doc]
        #[utoipa::path(
            put,
            path = $item,
            tag = $tag,
            params(($id = i64, Path, description = "The ID")),
            request_body(content = $In, description = "The fields to change; the others are kept"),
            responses(
                (status = 204, description = "Updated"),
                (status = 400, description = "Bad ID or body is not valid JSON", body = crate::api::error::ErrorBody),
                (status = 401, description = "No valid token", body = crate::api::error::ErrorBody),
                (status = 404, description = "Not found", body = crate::api::error::ErrorBody),
                (status = 409, description = "A unique field is taken", body = crate::api::error::ErrorBody),
                (status = 422, description = "A field is invalid", body = crate::api::error::ErrorBody),
            )
        )]
        pub async fn $update_fn(
            axum::extract::State(state): axum::extract::State<crate::api::ApiState>,
            crate::api::error::PathParams(id): crate::api::error::PathParams<String>,
            crate::api::error::JsonBody(patch): crate::api::error::JsonBody<serde_json::Value>,
        ) -> Result<axum::http::StatusCode, crate::api::error::ApiError> {
            let id = crate::api::error::path_id($id, &id)?;
            let Some(current) = state.store.$get(id).await? else {
                return Err(crate::api::error::not_found_id($what, id));
            };
            let input: $In = crate::api::schema::apply_put(&$In::from(&current), patch)?;
            let new: $New = input.try_into()?;
            state.store.$update(id, new).await?;
            Ok(axum::http::StatusCode::NO_CONTENT)
        }

        #[doc = $delete_doc]
        #[utoipa::path(
            delete,
            path = $item,
            tag = $tag,
            params(($id = i64, Path, description = "The ID")),
            responses(
                (status = 204, description = "Deleted"),
                (status = 400, description = "The ID is not a number", body = crate::api::error::ErrorBody),
                (status = 401, description = "No valid token", body = crate::api::error::ErrorBody),
                (status = 404, description = "Not found", body = crate::api::error::ErrorBody),
                (status = 409, description = "Still in use", body = crate::api::error::ErrorBody),
            )
        )]
        pub async fn $delete_fn(
            axum::extract::State(state): axum::extract::State<crate::api::ApiState>,
            crate::api::error::PathParams(id): crate::api::error::PathParams<String>,
        ) -> Result<axum::http::StatusCode, crate::api::error::ApiError> {
            let id = crate::api::error::path_id($id, &id)?;
            if state.store.$delete(id).await? {
                Ok(axum::http::StatusCode::NO_CONTENT)
            } else {
                Err(crate::api::error::not_found_id($what, id))
            }
        }
    };
}

pub(crate) use crud;
