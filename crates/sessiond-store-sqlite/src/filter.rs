//! Queries whose WHERE clause depends on which filters are set.

use crate::error::DbResult;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, ToSql};

/// A SELECT grown clause by clause, with the named parameters its clauses use.
pub(crate) struct Filter {
    sql: String,
    params: Vec<(&'static str, Value)>,
}

impl Filter {
    /// `select` ends in a WHERE clause that uses the parameter `name`.
    pub(crate) fn new(select: &str, name: &'static str, value: impl Into<Value>) -> Self {
        Self {
            sql: select.to_owned(),
            params: vec![(name, value.into())],
        }
    }

    /// Adds `AND clause`; `clause` uses the parameter `name`, which is bound once however
    /// many clauses use it.
    pub(crate) fn and(&mut self, clause: &str, name: &'static str, value: impl Into<Value>) {
        self.and_with(clause, [(name, value.into())]);
    }

    /// Adds `AND clause` for a clause that uses several parameters, each bound once however
    /// many clauses use it.
    pub(crate) fn and_with<const N: usize>(
        &mut self,
        clause: &str,
        params: [(&'static str, Value); N],
    ) {
        self.and_const(clause);
        for (name, value) in params {
            if self.params.iter().all(|(n, _)| *n != name) {
                self.params.push((name, value));
            }
        }
    }

    /// Adds `AND clause` for a clause without parameters.
    pub(crate) fn and_const(&mut self, clause: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(clause);
    }

    /// Adds the ORDER BY and the LIMIT.
    pub(crate) fn finish(&mut self, order_by: &str, limit: usize) {
        self.sql.push_str(" ORDER BY ");
        self.sql.push_str(order_by);
        self.sql.push_str(" LIMIT :limit");
        self.params.push((
            ":limit",
            Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)),
        ));
    }

    pub(crate) fn query<T>(
        &self,
        c: &Connection,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> DbResult<Vec<T>> {
        let params: Vec<(&str, &dyn ToSql)> = self
            .params
            .iter()
            .map(|(name, value)| (*name, value as &dyn ToSql))
            .collect();
        let mut stmt = c.prepare_cached(&self.sql)?;
        let rows = stmt
            .query_map(params.as_slice(), map)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
