package georoute

import "math"

// earthRadiusKm is the mean Earth radius the haversine distance uses (design §3).
const earthRadiusKm = 6371.0

// point is a position on the unit sphere. Comparing two points' dot products
// orders them exactly as their great-circle distances do, so the query path
// ranks sites with three multiplications each and no trigonometry; only the
// distance that is reported (metrics, explain) is turned back into kilometres.
type point struct{ x, y, z float64 }

// pointAt returns the unit vector of latitude lat and longitude lon in degrees.
func pointAt(lat, lon float64) point {
	φ, λ := lat*math.Pi/180, lon*math.Pi/180
	cosφ := math.Cos(φ)
	return point{x: cosφ * math.Cos(λ), y: cosφ * math.Sin(λ), z: math.Sin(φ)}
}

// closeness is larger the nearer q is to p: the cosine of the central angle.
func (p point) closeness(q point) float64 { return p.x*q.x + p.y*q.y + p.z*q.z }

// distanceKm converts a closeness into the haversine distance in kilometres.
// It goes through the chord length rather than acos, which loses precision for
// nearby points.
func distanceKm(p, q point) float64 {
	dx, dy, dz := p.x-q.x, p.y-q.y, p.z-q.z
	chord := math.Sqrt(dx*dx + dy*dy + dz*dz)
	if chord > 2 {
		chord = 2
	}
	return 2 * earthRadiusKm * math.Asin(chord/2)
}

// lat and lon turn a point back into degrees, for explanations.
func (p point) lat() float64 { return math.Asin(max(-1, min(1, p.z))) * 180 / math.Pi }
func (p point) lon() float64 { return math.Atan2(p.y, p.x) * 180 / math.Pi }
