//! The admin REST API: JSON over HTTP under `/api/v1`, bearer-token authentication, an OpenAPI
//! document at `/api/v1/openapi.json`. Routes follow Wazo's conventions.
