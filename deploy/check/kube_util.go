package check

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// metaSelector turns a label selector into a labels.Selector; an absent one
// is an error, as the API server refuses it.
func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, fmt.Errorf("missing")
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, err
	}
	if sel.Empty() {
		return nil, fmt.Errorf("empty: it would select every pod")
	}
	return sel, nil
}

// intOrPercent reads "1" or "50%" of total (a percentage rounded up, as
// the disruption controller does for minAvailable).
func intOrPercent(v string, total int) (int, error) {
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(pct)
		if err != nil || n < 0 || n > 100 {
			return 0, fmt.Errorf("%q is not a percentage", v)
		}
		return int(math.Ceil(float64(n) * float64(total) / 100)), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a count", v)
	}
	return n, nil
}
