//! Pure loss functions on tensors with their named terms; one file per method, same stem as the
//! method and the YAML `method:` word.

pub mod corinfomax;
