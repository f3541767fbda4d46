//! Traffic generators and benchmark drivers (see issue "Performance").
