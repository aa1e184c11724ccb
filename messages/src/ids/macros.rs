//! Boilerplate shared by the string-like identifier newtypes (crate-private).

/// Implements `Display` (the canonical string), `FromStr` (the strict
/// `parse`), `Serialize` (plain string) and `Deserialize` (plain string through
/// the given lenient constructor, serde error on failure) for a type that has
/// `as_str(&self) -> &str` and `parse(&str) -> Result<Self, IdError>`.
macro_rules! string_id_impls {
    ($ty:ty, $lenient:path, $expecting:literal) => {
        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::ids::IdError;
            /// Strict parse, same as `parse`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        $lenient(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

/// Implements `utoipa::PartialSchema` + `utoipa::ToSchema` as an OpenAPI
/// `string` with a description, optional pattern, length bounds and example.
macro_rules! string_schema {
    ($ty:ty, $desc:expr, $pattern:expr, $min:expr, $max:expr, $example:expr) => {
        impl ::utoipa::PartialSchema for $ty {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::schema::Schema> {
                let pattern: Option<&str> = $pattern;
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .description(Some($desc))
                    .pattern(pattern)
                    .min_length(Some($min))
                    .max_length(Some($max))
                    .examples([::serde_json::Value::from($example)])
                    .into()
            }
        }

        impl ::utoipa::ToSchema for $ty {}
    };
}

pub(crate) use string_id_impls;
pub(crate) use string_schema;
