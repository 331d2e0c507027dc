//! List conventions shared by every collection route (Wazo's): `limit`, `offset`, `order`,
//! `direction`, `search` in the query string, and `{"total": N, "items": [...]}` back, where
//! `total` counts every item matching `search`, not just the page.

use super::error::{query_value, unknown_query_param, ApiError, FromQuery};
use crate::store::{ListQuery, SortDirection};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

/// Sort direction of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "asc" => Ok(Direction::Asc),
            "desc" => Ok(Direction::Desc),
            other => Err(format!("unknown direction {other:?}")),
        }
    }
}

/// The list parameters of a collection route.
#[derive(Debug, Clone, Default, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most items to return; without it, every item from `offset` on.
    #[param(minimum = 0)]
    pub limit: Option<u32>,
    /// Items to skip first (default 0).
    #[param(minimum = 0)]
    pub offset: u32,
    /// The field to sort by; each route lists the fields it sorts by.
    pub order: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(inline)]
    pub direction: Direction,
    /// Case-insensitive substring matched against the route's searchable fields.
    pub search: Option<String>,
}

/// The names [`ListParams`] takes, for "unknown parameter" errors.
pub const LIST_PARAMS: &[&str] = &["limit", "offset", "order", "direction", "search"];

impl ListParams {
    /// Takes one list parameter; `Ok(false)` when `name` is not one.
    pub fn take(&mut self, name: &str, value: &str) -> Result<bool, ApiError> {
        match name {
            "limit" => self.limit = Some(query_value(name, value, "a whole number >= 0")?),
            "offset" => self.offset = query_value(name, value, "a whole number >= 0")?,
            "order" => self.order = Some(value.to_string()),
            "direction" => self.direction = query_value(name, value, "asc or desc")?,
            "search" => {
                if value.chars().count() > 128 {
                    return Err(ApiError::bad_request(
                        Some("search"),
                        "query parameter search: at most 128 characters",
                    ));
                }
                self.search = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl FromQuery for ListParams {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut p = ListParams::default();
        for (name, value) in pairs {
            if !p.take(&name, &value)? {
                return Err(unknown_query_param(&name, LIST_PARAMS));
            }
        }
        Ok(p)
    }
}

impl ListParams {
    /// The store's form of these parameters.
    pub fn to_query(&self) -> ListQuery {
        ListQuery {
            limit: self.limit,
            offset: self.offset,
            order: self.order.clone(),
            direction: match self.direction {
                Direction::Asc => SortDirection::Asc,
                Direction::Desc => SortDirection::Desc,
            },
            search: self.search.clone(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// How many items match (all pages).
    pub total: u64,
    pub items: Vec<T>,
}

impl<T> Page<T> {
    /// The API form of a store page.
    pub fn from_store<R>(page: crate::store::Page<R>, f: impl Fn(&R) -> T) -> Page<T> {
        Page {
            total: page.total,
            items: page.items.iter().map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<ListParams, ApiError> {
        ListParams::from_pairs(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn parses_and_refuses() {
        let p = params(&[("limit", "2"), ("offset", "1"), ("direction", "desc")]).unwrap();
        assert_eq!(p.limit, Some(2));
        assert_eq!(p.offset, 1);
        assert_eq!(p.direction, Direction::Desc);
        let e = params(&[("limit", "-1")]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limit"));
        let e = params(&[("direction", "up")]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("direction"));
        let e = params(&[("serach", "x")]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("serach"));
        let q = params(&[("order", "name"), ("search", "x")])
            .unwrap()
            .to_query();
        assert_eq!(q.order.as_deref(), Some("name"));
        assert_eq!(q.search.as_deref(), Some("x"));
        assert_eq!(q.direction, SortDirection::Asc);
    }
}
