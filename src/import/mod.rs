//! Importers: configuration written for other deploy tools, turned into berth's resources.
//!
//! Pure: an importer takes file texts and returns resources as plain data plus what it could not
//! map, so what it decides is tested without a store or a host. The CLI (`berth import …`) reads
//! the files, seals Secret values and prints or writes the result.

pub mod kamal;
