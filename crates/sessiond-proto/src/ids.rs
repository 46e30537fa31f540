//! The formats of the API's ids, as the OpenAPI document describes them. On the wire, and in
//! the fields of this crate's types, they are plain strings; these types only carry the
//! schema (the fields name them with `#[schema(value_type = …)]`).

use utoipa::ToSchema;

/// A tenant id (`X-Tenant-ID`).
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "1234567")]
#[allow(dead_code)]
pub struct TenantId(String);

/// A session id: 128 random bits, base64url (22 characters).
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_-]{22}$", example = "q3v1mZJ0c4y5KQxY2p8f7A")]
#[allow(dead_code)]
pub struct SessionId(String);
