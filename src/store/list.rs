//! Building the SQL of a paged, sorted, searched list ([`ListQuery`]) from a per-resource
//! [`ListSpec`]. The only text spliced into SQL comes from the `ListSpec` constants: the column
//! to sort by is looked up in a whitelist by the name the client gave, the search text is a
//! bound parameter.

use super::{ListQuery, SortDirection, StoreError};

/// What a resource's list looks like in SQL.
pub(super) struct ListSpec {
    /// `SELECT <columns>` (everything before `FROM`).
    pub select: &'static str,
    /// `FROM <table> [joins]`.
    pub from: &'static str,
    /// Sortable fields: (name a client uses, SQL expression).
    pub orders: &'static [(&'static str, &'static str)],
    /// The field sorted by when the query names none.
    pub default_order: &'static str,
    /// The primary key, sorted by last so pages are stable.
    pub key: &'static str,
    /// Text expressions `search` looks in.
    pub search: &'static [&'static str],
}

/// The SQL of one list request. Parameters: `$1` search pattern (or NULL), `$2` limit,
/// `$3` offset; the count query uses `$1` only.
pub(super) struct ListSql {
    pub items: String,
    pub count: String,
    pub pattern: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Longest search text accepted.
const MAX_SEARCH: usize = 128;

impl ListSpec {
    /// The sortable field names, for error messages and the API's documentation.
    pub fn order_names(&self) -> Vec<&'static str> {
        self.orders.iter().map(|(n, _)| *n).collect()
    }

    pub fn build(&self, q: &ListQuery) -> Result<ListSql, StoreError> {
        let order_name = q.order.as_deref().unwrap_or(self.default_order);
        let Some((_, order_sql)) = self.orders.iter().find(|(n, _)| *n == order_name) else {
            return Err(StoreError::Invalid {
                field: "order",
                message: format!(
                    "cannot sort by {order_name:?}: use one of {}",
                    self.order_names().join(", ")
                ),
            });
        };
        let dir = match q.direction {
            SortDirection::Asc => "ASC",
            SortDirection::Desc => "DESC",
        };
        let pattern = match q.search.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) if s.chars().count() > MAX_SEARCH => {
                return Err(StoreError::Invalid {
                    field: "search",
                    message: format!("must be at most {MAX_SEARCH} characters"),
                })
            }
            Some(s) => Some(format!("%{}%", escape_like(&s.to_lowercase()))),
        };
        let search_sql = if self.search.is_empty() {
            "TRUE".to_string()
        } else {
            self.search
                .iter()
                .map(|e| format!("LOWER(COALESCE({e}, '')) LIKE $1 ESCAPE '\\'"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let filter = format!("WHERE ($1 IS NULL OR {search_sql})");
        // NULLs last in both directions and on both backends (they disagree by default).
        let items = format!(
            "{} {} {filter} ORDER BY ({order_sql}) IS NULL, {order_sql} {dir}, {} {dir} \
             LIMIT $2 OFFSET $3",
            self.select, self.from, self.key
        );
        let count = format!("SELECT COUNT(*) {} {filter}", self.from);
        Ok(ListSql {
            items,
            count,
            pattern,
            limit: q.limit.map_or(i64::MAX, i64::from),
            offset: i64::from(q.offset),
        })
    }
}

/// Escapes `%`, `_` and the escape character itself for `LIKE ... ESCAPE '\'`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs a [`ListSql`] on `$pool` and decodes each row with `$decode` (a macro taking `&row`
/// and yielding `Result<T, StoreError>`); yields `Result<(u64, Vec<T>), StoreError>`.
macro_rules! run_list {
    ($pool:ident, $sql:expr, $decode:ident) => {{
        let sql: super::list::ListSql = $sql;
        let mut tx = $pool.begin().await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.count))
            .bind(sql.pattern.as_deref())
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.items))
            .bind(sql.pattern.as_deref())
            .bind(sql.limit)
            .bind(sql.offset)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|r| $decode!(r))
            .collect::<Result<Vec<_>, StoreError>>();
        items.map(|items| (u64::try_from(total).unwrap_or(0), items))
    }};
}
pub(super) use run_list;

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ListSpec = ListSpec {
        select: "SELECT id, name",
        from: "FROM things",
        orders: &[("id", "id"), ("name", "name")],
        default_order: "name",
        key: "id",
        search: &["name", "note"],
    };

    #[test]
    fn order_is_whitelisted_never_spliced() {
        let q = ListQuery {
            order: Some("name; DROP TABLE users".into()),
            ..Default::default()
        };
        let Err(StoreError::Invalid { field, message }) = SPEC.build(&q) else {
            panic!("accepted an unknown order");
        };
        assert_eq!(field, "order");
        assert!(message.contains("id, name"), "{message}");
        let q = ListQuery {
            order: Some("id".into()),
            direction: SortDirection::Desc,
            limit: Some(5),
            offset: 10,
            search: Some(" 50%_off\\ ".into()),
        };
        let sql = SPEC.build(&q).unwrap();
        assert!(sql
            .items
            .contains("ORDER BY (id) IS NULL, id DESC, id DESC"));
        assert_eq!(sql.pattern.as_deref(), Some("%50\\%\\_off\\\\%"));
        assert_eq!((sql.limit, sql.offset), (5, 10));
        let all = SPEC.build(&ListQuery::default()).unwrap();
        assert_eq!(all.limit, i64::MAX);
        assert!(all.pattern.is_none());
        assert!(all.items.contains("ORDER BY (name) IS NULL, name ASC"));
        assert!(all.count.starts_with("SELECT COUNT(*) FROM things WHERE"));
    }
}
