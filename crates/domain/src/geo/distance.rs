//! Points, boxes and great-circle distances on a spherical Earth.
//!
//! Ride-hailing radii are metres to tens of kilometres, where the spherical model is within
//! ~0.5 % of the ellipsoid; that is far below GPS noise and lets every distance be a few
//! trigonometric calls instead of an iterative geodesic solver.

use super::GeoError;

/// Mean Earth radius (IUGG R1) in metres, used by every distance in this crate.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point in degrees (WGS84 latitude/longitude).
///
/// The fields are public for cheap construction from decoded events; use [`LatLon::new`] when
/// the values come from outside and must be checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    /// Latitude in degrees, `[-90, 90]`.
    pub lat: f64,
    /// Longitude in degrees, `[-180, 180]`.
    pub lon: f64,
}

impl LatLon {
    /// A checked point.
    ///
    /// # Errors
    /// [`GeoError::NonFiniteCoordinate`] if either value is NaN or infinite,
    /// [`GeoError::LatitudeOutOfRange`] / [`GeoError::LongitudeOutOfRange`] if outside
    /// `[-90, 90]` / `[-180, 180]`.
    pub fn new(lat: f64, lon: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !lon.is_finite() {
            return Err(GeoError::NonFiniteCoordinate { lat, lon });
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::LatitudeOutOfRange(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::LongitudeOutOfRange(lon));
        }
        Ok(Self { lat, lon })
    }

    /// Re-checks a point whose public fields may have been set directly.
    ///
    /// # Errors
    /// As [`LatLon::new`].
    pub fn validated(self) -> Result<Self, GeoError> {
        Self::new(self.lat, self.lon)
    }
}

/// Great-circle distance in metres between two points (haversine formula).
///
/// Haversine rather than the spherical law of cosines because it stays accurate for the
/// metre-scale distances the matcher compares (`acos` near 1 loses most of its digits).
#[must_use]
pub fn haversine_m(a: LatLon, b: LatLon) -> f64 {
    // Rounding can push `h` a hair above 1 for antipodal points; asin would then be NaN.
    2.0 * EARTH_RADIUS_M * haversine_term(a, b).clamp(0.0, 1.0).sqrt().asin()
}

/// `sin²(d / 2R)`, which grows with the distance `d`: comparing it instead of distances
/// saves the `asin` and `sqrt` when only the nearer of two points matters.
fn haversine_term(a: LatLon, b: LatLon) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let half_dphi = (phi2 - phi1) / 2.0;
    let half_dlambda = (b.lon - a.lon).to_radians() / 2.0;
    half_dphi.sin().powi(2) + phi1.cos() * phi2.cos() * half_dlambda.sin().powi(2)
}

/// Wraps a longitude difference in degrees into `[-180, 180)`.
fn wrap_lon_delta(delta: f64) -> f64 {
    (delta + 180.0).rem_euclid(360.0) - 180.0
}

/// A latitude/longitude rectangle in degrees, edges included.
///
/// Geohash cells never straddle the antimeridian, so a box always has
/// `min_lon <= max_lon`; points on the other side of ±180° are still measured correctly
/// because longitude differences are wrapped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Southern edge.
    pub min_lat: f64,
    /// Northern edge.
    pub max_lat: f64,
    /// Western edge.
    pub min_lon: f64,
    /// Eastern edge.
    pub max_lon: f64,
}

impl BoundingBox {
    /// The point halfway between the edges (in degrees, not area-weighted).
    #[must_use]
    pub fn center(&self) -> LatLon {
        LatLon {
            lat: (self.min_lat + self.max_lat) / 2.0,
            lon: (self.min_lon + self.max_lon) / 2.0,
        }
    }

    /// Whether the point lies in the box, edges included (so a point on a shared edge is in
    /// both boxes; use [`Cell::contains`](super::Cell::contains) for exactly-one-cell
    /// membership).
    #[must_use]
    pub fn contains(&self, point: LatLon) -> bool {
        (self.min_lat..=self.max_lat).contains(&point.lat) && self.lon_contains(point.lon)
    }

    fn lon_contains(&self, lon: f64) -> bool {
        (self.min_lon..=self.max_lon).contains(&lon)
            // -180 and +180 are the same meridian.
            || (lon == -180.0 && self.max_lon == 180.0)
            || (lon == 180.0 && self.min_lon == -180.0)
    }

    /// The point of the box nearest to `point` along the sphere (the point itself if inside).
    ///
    /// This is exact, not the usual "clamp lat and lon" shortcut: when the point is beside the
    /// box (outside its longitude span) the nearest point on a meridian edge is generally *not*
    /// at the point's own latitude, but where the great circle through the point crosses that
    /// meridian at a right angle. Clamping would overestimate the distance there, and an
    /// overestimate makes radius and halo searches silently drop cells that are in range.
    #[must_use]
    pub fn closest_point(&self, point: LatLon) -> LatLon {
        if self.lon_contains(point.lon) {
            // Within the longitude span the nearest point is straight north or south: along a
            // parallel the distance grows with the longitude difference.
            // max/min rather than clamp: clamp panics on a malformed box (min > max, NaN).
            let lat = point.lat.max(self.min_lat).min(self.max_lat);
            return LatLon {
                lat,
                lon: point.lon,
            };
        }
        // Outside the span the nearest point is on the meridian edge that is nearer in
        // (wrapped) longitude, because for any pair of latitudes the distance grows with
        // |Δλ| in [0°, 180°].
        let to_min = wrap_lon_delta(point.lon - self.min_lon);
        let to_max = wrap_lon_delta(point.lon - self.max_lon);
        let (edge_lon, dlambda) = if to_min.abs() <= to_max.abs() {
            (self.min_lon, to_min)
        } else {
            (self.max_lon, to_max)
        };
        // On the meridian, cos(distance) = sin φp·sin φ + cos φp·cos φ·cos Δλ = C·cos(φ − φ*)
        // with φ* below: it peaks at φ* and otherwise the best latitude is an end of the edge.
        let phi_p = point.lat.to_radians();
        let foot = phi_p
            .sin()
            .atan2(phi_p.cos() * dlambda.to_radians().cos())
            .to_degrees();
        let mut best = LatLon {
            lat: self.min_lat,
            lon: edge_lon,
        };
        let mut best_h = haversine_term(point, best);
        let mut consider = |lat: f64| {
            let candidate = LatLon { lat, lon: edge_lon };
            let h = haversine_term(point, candidate);
            if h < best_h {
                best = candidate;
                best_h = h;
            }
        };
        consider(self.max_lat);
        if (self.min_lat..=self.max_lat).contains(&foot) {
            consider(foot);
        }
        best
    }

    /// Shortest great-circle distance in metres from `point` to the box: 0 inside or on an
    /// edge, otherwise the distance to [`closest_point`](Self::closest_point).
    #[must_use]
    pub fn distance_m(&self, point: LatLon) -> f64 {
        haversine_m(point, self.closest_point(point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

    #[test]
    fn haversine_known_distances() {
        let paris = LatLon {
            lat: 48.8566,
            lon: 2.3522,
        };
        let london = LatLon {
            lat: 51.5074,
            lon: -0.1278,
        };
        let d = haversine_m(paris, london);
        assert!((d - 343_560.0).abs() < 1_000.0, "paris-london {d}");
        // One degree along the equator, and across the antimeridian.
        let a = LatLon {
            lat: 0.0,
            lon: 179.5,
        };
        let b = LatLon {
            lat: 0.0,
            lon: -179.5,
        };
        assert!((haversine_m(a, b) - METRES_PER_DEGREE).abs() < 1e-6);
        // Antipodes: half the circumference, not NaN.
        let north = LatLon {
            lat: 90.0,
            lon: 0.0,
        };
        let south = LatLon {
            lat: -90.0,
            lon: 0.0,
        };
        assert!((haversine_m(north, south) - 180.0 * METRES_PER_DEGREE).abs() < 1e-6);
        assert_eq!(haversine_m(paris, paris), 0.0);
    }

    #[test]
    fn latlon_new_rejects_each_bad_input_distinctly() {
        assert!(matches!(
            LatLon::new(f64::NAN, 0.0),
            Err(GeoError::NonFiniteCoordinate { .. })
        ));
        assert_eq!(
            LatLon::new(90.5, 0.0),
            Err(GeoError::LatitudeOutOfRange(90.5))
        );
        assert_eq!(
            LatLon::new(0.0, -180.5),
            Err(GeoError::LongitudeOutOfRange(-180.5))
        );
        assert_eq!(
            LatLon::new(-90.0, 180.0),
            Ok(LatLon {
                lat: -90.0,
                lon: 180.0
            })
        );
    }

    #[test]
    fn distance_is_zero_inside_and_meridional_above() {
        let b = BoundingBox {
            min_lat: 10.0,
            max_lat: 11.0,
            min_lon: 20.0,
            max_lon: 21.0,
        };
        assert_eq!(
            b.distance_m(LatLon {
                lat: 10.5,
                lon: 20.5
            }),
            0.0
        );
        assert_eq!(
            b.distance_m(LatLon {
                lat: 11.0,
                lon: 21.0
            }),
            0.0
        );
        let north = b.distance_m(LatLon {
            lat: 12.0,
            lon: 20.5,
        });
        assert!((north - METRES_PER_DEGREE).abs() < 1e-6);
    }

    #[test]
    fn distance_beside_a_box_is_below_the_clamped_shortcut() {
        // At high latitude, east of a tall box: the perpendicular foot on its eastern edge lies
        // poleward of the point and is closer than the same-latitude point.
        let b = BoundingBox {
            min_lat: 50.0,
            max_lat: 70.0,
            min_lon: 0.0,
            max_lon: 10.0,
        };
        let p = LatLon {
            lat: 60.0,
            lon: 40.0,
        };
        let clamped = haversine_m(
            p,
            LatLon {
                lat: 60.0,
                lon: 10.0,
            },
        );
        let closest = b.closest_point(p);
        assert_eq!(closest.lon, 10.0);
        assert!(closest.lat > 60.0, "foot should be poleward: {closest:?}");
        assert!(b.distance_m(p) < clamped - 1_000.0);
    }

    #[test]
    fn distance_wraps_across_the_antimeridian() {
        let b = BoundingBox {
            min_lat: 0.0,
            max_lat: 1.0,
            min_lon: -180.0,
            max_lon: -179.0,
        };
        let p = LatLon {
            lat: 0.5,
            lon: 179.0,
        };
        assert!((b.distance_m(p) - METRES_PER_DEGREE * 0.5f64.to_radians().cos()).abs() < 50.0);
        assert_eq!(
            b.distance_m(LatLon {
                lat: 0.5,
                lon: 180.0
            }),
            0.0
        );
    }

    #[test]
    fn wrap_lon_delta_range() {
        assert_eq!(wrap_lon_delta(180.0), -180.0);
        assert_eq!(wrap_lon_delta(-180.0), -180.0);
        assert_eq!(wrap_lon_delta(359.0), -1.0);
        assert_eq!(wrap_lon_delta(-359.0), 1.0);
        assert_eq!(wrap_lon_delta(0.0), 0.0);
    }
}
