package heijunka_test

import (
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// levelerModel is deficit round robin kept as a queue of the keys with
// items waiting: the front key has the turn (or is next to take it); a
// turn that ends sends its key to the back, and a key that starts
// waiting joins at the back, after every key waiting already.
type levelerModel struct {
	queue   []string
	items   map[string][]levelerModelItem
	deficit map[string]int
	inTurn  map[string]bool
	weight  map[string]int // the weight at the key's latest Push
}

type levelerModelItem struct{ id, cost int }

func (m *levelerModel) push(key string, id, cost, weight, backlog, maxKeys int) error {
	if _, waiting := m.items[key]; !waiting && len(m.items) >= maxKeys {
		return heijunka.ErrTooManyKeys
	}
	m.weight[key] = weight
	if len(m.items[key]) >= backlog {
		return heijunka.ErrBacklogFull
	}
	if len(m.items[key]) == 0 {
		m.queue = append(m.queue, key)
	}
	m.items[key] = append(m.items[key], levelerModelItem{id, cost})
	return nil
}

// pop runs rounds one credit at a time, as plain deficit round robin.
func (m *levelerModel) pop() (string, int, bool) {
	for len(m.queue) > 0 {
		k := m.queue[0]
		if !m.inTurn[k] {
			m.deficit[k] += m.weight[k]
			m.inTurn[k] = true
		}
		if it := m.items[k][0]; it.cost <= m.deficit[k] {
			m.deficit[k] -= it.cost
			m.items[k] = m.items[k][1:]
			if len(m.items[k]) == 0 {
				delete(m.items, k)
				delete(m.deficit, k)
				delete(m.inTurn, k)
				m.queue = m.queue[1:]
			}
			return k, it.id, true
		}
		m.inTurn[k] = false
		m.queue = append(m.queue[1:], k)
	}
	return "", 0, false
}

// TestLevelerMatchesModel drives a Leveler with random pushes (keys
// coming and going, weights changing, costs above a key's weight) and
// pops, against plain deficit round robin run one credit at a time: every
// Push error and every item popped, in order, is the model's.
func TestLevelerMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		backlog := rapid.IntRange(1, 5).Draw(t, "backlog")
		maxKeys := rapid.IntRange(1, 5).Draw(t, "maxKeys")
		weights := map[string]int{}
		l, err := heijunka.NewLeveler(heijunka.LevelerOptions[levelerModelItem]{
			Backlog: backlog, MaxKeys: maxKeys,
			Weight: func(key string) int { return weights[key] },
			Cost:   func(it levelerModelItem) int { return it.cost },
		})
		if err != nil {
			t.Fatal(err)
		}
		m := &levelerModel{items: map[string][]levelerModelItem{}, deficit: map[string]int{},
			inTurn: map[string]bool{}, weight: map[string]int{}}
		id := 0
		for step := range rapid.IntRange(1, 200).Draw(t, "steps") {
			if rapid.IntRange(0, 2).Draw(t, "op") > 0 {
				key := "k" + strconv.Itoa(rapid.IntRange(0, 6).Draw(t, "key"))
				weights[key] = rapid.IntRange(-1, 4).Draw(t, "weight")
				cost := rapid.IntRange(-1, 9).Draw(t, "cost")
				id++
				got := l.Push(key, levelerModelItem{id, cost})
				want := m.push(key, id, max(cost, 1), max(weights[key], 1), backlog, maxKeys)
				if got != want {
					t.Fatalf("step %d: Push(%s, #%d cost %d): %v, model %v", step, key, id, cost, got, want)
				}
				continue
			}
			key, it, ok := l.Pop()
			wkey, wid, wok := m.pop()
			if ok != wok || key != wkey || it.id != wid {
				t.Fatalf("step %d: Pop: %s #%d %v, model %s #%d %v", step, key, it.id, ok, wkey, wid, wok)
			}
		}
		for {
			key, it, ok := l.Pop()
			wkey, wid, wok := m.pop()
			if ok != wok || key != wkey || it.id != wid {
				t.Fatalf("drain: Pop: %s #%d %v, model %s #%d %v", key, it.id, ok, wkey, wid, wok)
			}
			if !ok {
				break
			}
		}
	})
}
