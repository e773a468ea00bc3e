//! Typed values parsed from Postgres text output (COPY and pgoutput share it), for destinations
//! that need more than text.
