// The andon board: renders /api/state, follows /api/events (server-sent
// events) and falls back to polling. Text from the server is set with
// textContent only, never parsed as HTML.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var state = null;
  var offset = 0; // server clock minus client clock, in ms
  var pollTimer = null;
  var live = false; // the event stream delivers
  var stream = null; // the EventSource followed
  var heard = 0; // Date.now() when the stream last said anything
  // The board says something on the stream every 15s at least (a state,
  // or a keep-alive): one silent for longer than this is dead, even
  // where the browser was not told (a network that dropped, a computer
  // that slept, a proxy that lost its upstream).
  var quietLimit = 40000;
  // The answers that carry the state (a poll's, the stream's events, the
  // cord's) are numbered in the order they were asked for, a stream's
  // event when it comes: an answer asked for before the last one taken
  // (a poll in flight while the stream delivered, a slow poll overtaken
  // by the next) is older than what the page shows, and is dropped.
  var asked = 0;
  var taken = 0;
  // The tabs of one board in one browser share one event stream (see
  // share): one of them, the leader, follows the board and tells the
  // others what it shows. A tab that cannot share leads alone.
  var channel = null; // the BroadcastChannel of the board's tabs
  var leading = true; // this tab follows the board itself
  var locked = false; // the leader is chosen by a Web Lock
  var me = Date.now() + Math.random(); // this tab: an older one is lower

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function now() { return Date.now() + offset; }

  function ago(t) {
    if (!t) return "";
    var s = Math.max(0, Math.round((now() - Date.parse(t)) / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    var h = Math.floor(m / 60);
    if (h < 48) return h + "h " + (m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  // clockTime is the time t in the browser's time zone, with its day
  // (and year) when that is not today's: a transition of three days ago
  // would read as one of this morning.
  function clockTime(t) {
    var d = new Date(Date.parse(t)), today = new Date(now());
    var time = d.toLocaleTimeString([], { hour12: false });
    if (d.toDateString() === today.toDateString()) return time;
    var day = { month: "short", day: "numeric" };
    if (d.getFullYear() !== today.getFullYear()) day.year = "numeric";
    return d.toLocaleDateString([], day) + " " + time;
  }

  function since(t) {
    if (!t) return null;
    return el("span", { class: "since", "data-since": t, text: "since " + clockTime(t) + " (" + ago(t) + ")" });
  }

  function sparkline(rule) {
    var w = 140, h = 34, pad = 3;
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", w);
    svg.setAttribute("height", h);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "recent values of " + rule.name);
    var pts = rule.recent || [];
    if (pts.length === 0) return svg;
    // The chart holds zero, the threshold (below zero too) and every value.
    var hi = rule.unit === "state" ? 1 : rule.threshold;
    var lo = Math.min(0, hi);
    pts.forEach(function (p) { hi = Math.max(hi, p.v); lo = Math.min(lo, p.v); });
    if (hi === lo) hi = lo + 1;
    // In halves: the span of values near the largest float64 would be
    // Infinity, and every coordinate NaN.
    lo /= 2;
    hi = hi / 2 + (hi / 2 - lo) * 0.1;
    function y(v) { return (h - pad - (v / 2 - lo) / (hi - lo) * (h - 2 * pad)).toFixed(1); }
    function x(i) { return pts.length === 1 ? w / 2 : (pad + i * (w - 2 * pad) / (pts.length - 1)).toFixed(1); }
    if (rule.unit !== "state") {
      var t = document.createElementNS(SVG, "line");
      t.setAttribute("x1", 0); t.setAttribute("x2", w);
      t.setAttribute("y1", y(rule.threshold)); t.setAttribute("y2", y(rule.threshold));
      svg.appendChild(t);
    }
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.map(function (p, i) { return x(i) + "," + y(p.v); }).join(" "));
    svg.appendChild(line);
    return svg;
  }

  function renderRule(r) {
    var badges = [
      el("span", { class: "badge state", text: r.state }),
      el("span", { class: "badge sev-" + r.severity, text: r.severity })
    ];
    if (r.silenced) badges.push(el("span", { class: "badge", text: "silenced" }));
    if (r.insufficient_data) badges.push(el("span", { class: "badge", text: "too little data (" + r.samples + "/" + r.min_samples + ")" }));
    if (r.last_error) badges.push(el("span", { class: "badge", text: "error" }));
    var value = el("div", { class: "value" }, [
      document.createTextNode(r.unit === "state" ? (r.value >= 0.5 ? "ON" : "off") : r.value_text),
      r.threshold_text ? el("span", { class: "threshold", text: "  threshold " + r.threshold_text }) : null
    ]);
    var meta = [];
    if (r.since) meta.push(since(r.since));
    if (r.unit !== "state") meta.push(el("span", { text: (meta.length ? " · " : "") + r.samples + " samples" }));
    if (r.last_error) meta.push(el("span", {}, [document.createTextNode(" · "), el("bdi", { text: r.last_error })]));
    // The board sends only a link it takes (an http or https URL, or a
    // path of its own site), as for a panel's rows.
    if (r.runbook_url) {
      meta.push(document.createTextNode(" · "));
      meta.push(el("a", { href: r.runbook_url, rel: "noopener noreferrer", target: "_blank", text: "runbook" }));
    }
    return el("article", {
      class: "rule", id: "rule-" + r.name, "data-rule": r.name, "data-state": r.state, "data-color": r.color
    }, [
      el("div", { class: "head" }, [el("span", { class: "name", text: r.name })].concat(badges)),
      sparkline(r),
      value,
      // A rule without a summary of its own is summed up by its detail
      // (a stopped line's, an open breaker's): it is said once.
      r.summary !== r.detail ? el("div", { class: "summary-text", text: r.summary }) : null,
      // What the measurement says in words (why a line stopped, a
      // breaker's state and cause), which its value cannot.
      r.detail ? el("div", { class: "detail", text: r.detail }) : null,
      el("div", { class: "meta" }, meta)
    ]);
  }

  function renderLine(l) {
    if (l.error) return unknownTile("line", { "data-line": l.name }, l);
    return el("div", { class: "tile line" + (l.stopped ? " bad" : ""), "data-line": l.name, "data-stopped": String(l.stopped) }, [
      el("div", { class: "kind", text: "line" }),
      el("div", { class: "name", text: l.name }),
      el("div", { class: "status", text: l.stopped ? "STOPPED" : "running" }),
      l.stopped ? el("div", { class: "why", text: l.reason }) : null,
      l.stopped ? el("div", { class: "why" }, [since(l.since)]) : null
    ]);
  }

  // unknownTile shows a line or breaker whose state the board could not
  // read (its code panicked): its name and the error, no state.
  function unknownTile(kind, attrs, x) {
    attrs["class"] = "tile " + kind;
    attrs["data-error"] = "true";
    return el("div", attrs, [
      el("div", { class: "kind", text: kind }),
      el("div", { class: "name", text: x.name }),
      el("div", { class: "status", text: "unknown" }),
      el("div", { class: "why error", text: x.error })
    ]);
  }

  function renderBreaker(b) {
    if (b.error) return unknownTile("breaker", { "data-breaker": b.name }, b);
    return el("div", { class: "tile breaker" + (b.open ? " bad" : ""), "data-breaker": b.name, "data-state": b.state }, [
      el("div", { class: "kind", text: "breaker" }),
      el("div", { class: "name", text: b.name }),
      el("div", { class: "status", text: b.state }),
      b.reason && b.open ? el("div", { class: "why", text: b.reason }) : null,
      el("div", { class: "why" }, [since(b.since)])
    ]);
  }

  function renderPanel(p) {
    var head = el("tr", {}, p.columns.map(function (c) { return el("th", { scope: "col", text: c }); }));
    var rows = p.rows.map(function (r) {
      return el("tr", r.color ? { "data-color": r.color } : {}, r.cells.map(function (c, i) {
        if (i === 0 && r.link) return el("td", {}, [el("a", { href: r.link, rel: "noopener noreferrer", text: c })]);
        return el("td", { text: c });
      }));
    });
    var note = p.error || (p.rows.length === 0 ? p.empty : (p.more ? "and " + p.more + " more" : ""));
    return el("section", { class: "panel", "data-panel": p.title }, [
      el("h2", { text: p.title }),
      p.rows.length ? el("table", {}, [el("thead", {}, [head]), el("tbody", {}, rows)]) : null,
      note ? el("p", { class: p.error ? "error" : "note", text: note }) : null
    ]);
  }

  // setText changes e's text only when it differs: a live region is read
  // out again whenever its text is set.
  function setText(e, text) {
    if (e.textContent !== text) e.textContent = text;
  }

  // setParts is setText for a text made of the board's words and, at the
  // odd places of parts, text from outside (a name, a reason), each in a
  // bdi element: its direction, or a bidirectional control it holds,
  // cannot reorder the board's words around it.
  function setParts(e, parts) {
    if (e.textContent === parts.join("")) return;
    e.replaceChildren.apply(e, parts.map(function (p, i) {
      return i % 2 ? el("bdi", { text: p }) : document.createTextNode(p);
    }));
  }

  // ident is what a node is, whatever it shows: its kind, and for an
  // element its tag and the name of the rule, line, breaker or panel it
  // stands for. A node that changed is matched with the one of the same
  // ident it replaces.
  function ident(n) {
    if (n.nodeType !== 1) return "#" + n.nodeType;
    return n.nodeName + " " + (n.id || n.getAttribute("data-rule") || n.getAttribute("data-line") ||
      n.getAttribute("data-breaker") || n.getAttribute("data-panel") || "");
  }

  // update makes the children of box equal to nodes, newly made, while
  // keeping the nodes already there: a child equal to one of nodes stays
  // as it is, one that stands for the same thing is changed in place
  // (its attributes set, its children updated alike), and only the rest
  // is added or removed. What did not change keeps its node, so a link
  // keeps its focus, a text its selection, and a screen reader is not
  // read what it read already.
  function update(box, nodes) {
    var old = Array.prototype.slice.call(box.childNodes);
    var used = old.map(function () { return false; });
    var byText = Object.create(null), byIdent = Object.create(null);
    old.forEach(function (o, i) {
      var k = ident(o) + "\u0000" + o.textContent;
      (byText[k] = byText[k] || []).push(i);
      (byIdent[ident(o)] = byIdent[ident(o)] || []).push(i);
    });
    function take(list, ok) {
      for (var j = 0; list && j < list.length; j++) {
        var i = list[j];
        if (!used[i] && ok(old[i])) { used[i] = true; return old[i]; }
      }
      return null;
    }
    var want = nodes.map(function (n) {
      return take(byText[ident(n) + "\u0000" + n.textContent], function (o) { return o.isEqualNode(n); });
    });
    want = want.map(function (o, i) {
      if (o) return o;
      var n = nodes[i];
      o = take(byIdent[ident(n)], function () { return true; });
      if (!o) return n;
      if (n.nodeType === 1) {
        Array.prototype.slice.call(o.attributes).forEach(function (a) {
          if (!n.hasAttribute(a.name)) o.removeAttribute(a.name);
        });
        Array.prototype.forEach.call(n.attributes, function (a) {
          if (o.getAttribute(a.name) !== a.value) o.setAttribute(a.name, a.value);
        });
        update(o, Array.prototype.slice.call(n.childNodes));
      } else if (o.nodeValue !== n.nodeValue) {
        o.nodeValue = n.nodeValue;
      }
      return o;
    });
    var at = box.firstChild;
    want.forEach(function (n) {
      if (n === at) at = at.nextSibling;
      else box.insertBefore(n, at);
    });
    old.forEach(function (o, i) { if (!used[i]) box.removeChild(o); });
  }

  function render(s) {
    state = s;
    tell({ state: s });
    offset = Date.parse(s.time) - Date.now();
    document.title = s.title;
    $("title").textContent = s.title;

    var cord = $("cord");
    cord.setAttribute("data-pulled", String(s.cord.pulled));
    // The cord's status is announced when it changes; its age, which
    // goes on every second, is beside it rather than in it.
    setParts($("cord-text"), s.cord.pulled ? ["PULLED by ", s.cord.who, ": ", s.cord.reason] : ["ready"]);
    update($("cord-since"), s.cord.pulled && s.cord.since ? [document.createTextNode(" — "), since(s.cord.since)] : []);
    var had = document.activeElement;
    $("cord-form").hidden = s.read_only || s.cord.pulled;
    $("cord-reset").hidden = s.read_only || !s.cord.pulled;
    $("cord-who").hidden = !!s.named_by_board;
    // A control hidden while it has the focus (the button just pressed)
    // leaves it to the cord rather than to the document, where a screen
    // reader loses its place: the next Tab reaches the control shown in
    // its place. The focus goes to no button, so that a key pressed again
    // does not undo what the first did.
    if (had && had !== cord && cord.contains(had) && had.closest("[hidden]")) cord.focus();

    update($("lines"), s.lines.map(renderLine));
    update($("breakers"), s.breakers.map(renderBreaker));
    update($("panels"), (s.panels || []).map(renderPanel));
    var rules = s.rules.filter(function (r) { return r.name !== s.cord.name; });
    update($("rules"), rules.map(renderRule));
    update($("history"), s.history.slice().reverse().map(function (t) {
      var li = el("li", { class: "to-" + t.to });
      setParts(li, [clockTime(t.at) + "  ", t.rule, ": " + t.from + " → " + t.to]);
      return li;
    }));

    var firing = rules.filter(function (r) { return r.state === "firing"; }).length;
    var pending = rules.filter(function (r) { return r.state === "pending"; }).length;
    // The counts are announced when they change, not at every render.
    var counts = firing + " " + pending + " " + rules.length;
    if ($("summary").getAttribute("data-counts") !== counts) {
      $("summary").setAttribute("data-counts", counts);
      update($("summary"), [
        el("b", { text: String(firing) }), document.createTextNode(" firing · "),
        el("b", { text: String(pending) }), document.createTextNode(" pending · " + rules.length + (rules.length === 1 ? " rule" : " rules"))
      ]);
    }
    tick();
    showLinked(s);
  }

  // An alert links to its rule on the board: the board's URL with
  // "#rule-" and the rule's name. The rules are not on the page when the
  // browser looks for that fragment, so the first render brings the rule
  // (or the cord, for the cord's alert) into view; later ones leave the
  // scrolling to the reader.
  var linkShown = false;
  function showLinked(s) {
    if (linkShown) return;
    linkShown = true;
    var id = location.hash.slice(1);
    if (!id) return;
    var e = document.getElementById(id);
    if (!e) {
      try { id = decodeURIComponent(id); } catch (err) { return; }
      e = document.getElementById(id);
    }
    if (!e && id === "rule-" + s.cord.name) e = $("cord");
    if (e) e.scrollIntoView();
  }

  function tick() {
    if (stream && Date.now() - heard > quietLimit) {
      stream.close();
      lost();
    }
    if (!leading && !pollTimer && Date.now() - heard > quietLimit) orphaned();
    $("clock").textContent = new Date(now()).toLocaleTimeString([], { hour12: false });
    document.querySelectorAll("[data-since]").forEach(function (e) {
      var t = e.getAttribute("data-since");
      setText(e, "since " + clockTime(t) + " (" + ago(t) + ")");
    });
  }

  // setConn shows how the page follows the board; the state shown while
  // offline is greyed, as it may no longer be true.
  function setConn(mode, text) {
    tell({ conn: [mode, text] });
    var c = $("conn");
    c.setAttribute("data-mode", mode);
    document.body.setAttribute("data-conn", mode);
    setText(c, text);
  }

  // take reports whether the answer numbered n is to be taken, being
  // newer than the one taken last, and takes it.
  function take(n) {
    if (n < taken) return false;
    taken = n;
    return true;
  }

  // A poll is asked for when none is awaited, and given up after
  // pollLimit: over a network that dropped, one every two seconds would
  // pile up unanswered, to be sent all at once when it is back.
  var polling = false;
  var pollLimit = 10000;

  function poll() {
    if (polling) return;
    polling = true;
    var n = ++asked;
    var abort = window.AbortController ? new AbortController() : null;
    var limit = abort ? setTimeout(function () { abort.abort(); }, pollLimit) : null;
    fetch("api/state", { cache: "no-store", credentials: "same-origin", signal: abort ? abort.signal : undefined })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) { if (!live && take(n)) { render(s); setConn("polling", "polling"); } })
      .catch(function () { if (!live && take(n)) setConn("offline", "offline"); })
      .then(function () { clearTimeout(limit); polling = false; });
  }

  function startPolling() {
    if (pollTimer) return;
    poll();
    pollTimer = setInterval(poll, 2000);
  }

  // A stream refused (503: the board shut down, or too many live pages;
  // 501: the server in front cannot stream) is not retried by the browser: the page polls and asks for the
  // stream again after followDelay, as the answer's Retry-After says,
  // waiting twice as long after each refusal, up to a minute.
  var followDelay = 5000;
  var followTimer = null;

  function follow() {
    followTimer = null;
    if (!leading) return;
    if (!window.EventSource) { startPolling(); return; }
    var es = new EventSource("api/events");
    stream = es;
    heard = Date.now();
    es.addEventListener("state", function (ev) {
      heard = Date.now();
      live = true;
      followDelay = 5000;
      take(++asked);
      render(JSON.parse(ev.data));
      setConn("live", "live");
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    });
    es.addEventListener("keep-alive", function () { heard = Date.now(); tell({}); });
    es.onerror = function () {
      live = false;
      if (es.readyState === EventSource.CLOSED) lost();
      else setConn("offline", "reconnecting…");
    };
  }

  // lost gives up the stream, closed or silent for too long: the page
  // polls, and follows the stream again after followDelay. Until a poll
  // answers, the state shown may no longer be true; while the polls
  // answer, a stream refused again leaves the page polling.
  function lost() {
    stream = null;
    live = false;
    if ($("conn").getAttribute("data-mode") !== "polling") setConn("offline", "reconnecting…");
    startPolling();
    followTimer = setTimeout(follow, followDelay);
    followDelay = Math.min(2 * followDelay, 60000);
  }

  // share makes this tab one of the board's tabs in this browser, which
  // share one event stream. Over HTTP/1.1 a browser keeps at most six
  // connections to a host, and each stream holds one as long as its page
  // is open: a seventh tab with a stream of its own would never load. The
  // leader follows the board as a lone page does (its stream, or polls
  // when the stream is refused or falls silent) and tells the other tabs,
  // over a BroadcastChannel named for the board's URL, each state it
  // shows, how it follows the board, and each keep-alive; they show the
  // same. The leader holds a Web Lock of the same name, where the page
  // has Web Locks (a secure context: https, or localhost): when it
  // closes, the next tab waiting for the lock leads. Without Web Locks (a
  // page over plain http), a tab that hears no leader within a second of
  // opening leads, a leader that closes names the oldest tab it knows as
  // the next, and of two leaders the younger gives way. A tab that hears
  // nothing for quietLimit polls the board itself (with Web Locks) or
  // leads (without) until it hears a leader again. Without
  // BroadcastChannel, a tab follows the board alone.
  function share() {
    var name;
    try {
      name = "andon " + new URL("api/events", location.href).href;
      channel = new BroadcastChannel(name);
    } catch (e) {
      channel = null; // no BroadcastChannel, or storage denied: the tab is alone
    }
    if (!channel) { follow(); return; }
    channel.onmessage = function (ev) { hear(ev.data); };
    leading = false;
    heard = Date.now();
    post({ hello: true });
    locked = !!(navigator.locks && navigator.locks.request);
    if (locked) {
      navigator.locks.request(name, function () {
        lead();
        return new Promise(function () {}); // held until the tab closes
      }).catch(function () { lead(); });
      return;
    }
    setTimeout(function () { if (!heardFrom) lead(); }, 1000);
    addEventListener("pagehide", function () {
      var next = null;
      for (var t in tabs) if (next === null || Number(t) < next) next = Number(t);
      post(leading ? { gone: true, next: next } : { gone: true });
    });
  }

  // post sends m to the board's other tabs; tell does, when this tab
  // leads them.
  function post(m) {
    m.from = me;
    channel.postMessage(m);
  }
  function tell(m) {
    if (leading && channel) post(m);
  }

  var heardFrom = null; // the leader this tab last heard
  var tabs = Object.create(null); // the leader's other tabs, by their ids

  // hear takes a message from another tab of the board.
  function hear(m) {
    if (!m || typeof m !== "object") return;
    if (m.hello || m.here) {
      tabs[m.from] = true;
      if (m.hello && leading) tell(state ? { state: state, conn: conn() } : { conn: conn() });
      return;
    }
    if (m.gone) {
      delete tabs[m.from];
      if (m.next === me && !locked) lead();
      return;
    }
    if (leading) {
      // Two tabs lead (without Web Locks, both took the lead at once, or
      // one did not hear the other for a while): the younger gives way.
      if (locked || m.from > me) return;
      resign();
    }
    if (heardFrom !== m.from) {
      heardFrom = m.from;
      post({ here: true }); // for the leader to name the next one
    }
    heard = Date.now();
    live = true; // what the leader says is newer than a poll of this tab's
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (m.state) {
      take(++asked);
      render(m.state);
    }
    if (m.conn) setConn(m.conn[0], m.conn[1]);
  }

  // conn is how the page follows the board now: its mode and text.
  function conn() {
    var c = $("conn");
    return [c.getAttribute("data-mode"), c.textContent];
  }

  // lead makes this tab follow the board for the board's tabs.
  function lead() {
    if (leading) return;
    leading = true;
    live = false;
    follow();
  }

  // resign gives the lead to another tab.
  function resign() {
    leading = false;
    if (stream) { stream.close(); stream = null; }
    if (followTimer) { clearTimeout(followTimer); followTimer = null; }
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    followDelay = 5000;
  }

  // orphaned is called when a tab that does not lead has heard nothing for
  // quietLimit: the leader's tab may hang, or have gone without a word.
  function orphaned() {
    if (!locked) { lead(); return; }
    live = false;
    setConn("offline", "reconnecting…");
    startPolling();
  }

  // postCord sends the cord's action and renders the answer; it resolves
  // true when the board took it, false when it was refused or unanswered.
  // A request unanswered is given up after cordLimit ms, or the number of
  // ms in the cord's data-limit (set by a page, or a test, that will not
  // wait as long): over a network that dropped without a word, the browser
  // waits minutes before giving up, with no word on the page meanwhile.
  // The board may have taken a request it did not answer, so the page
  // says that the cord may have changed, which the event stream will show.
  // The button pressed is disabled until the request is answered or given
  // up, so that a second click does not send the cord's action again; its
  // text says what it waits for.
  var cordLimit = 10000;

  function postCord(body) {
    var reset = body.action === "reset";
    var button = $(reset ? "cord-reset" : "cord-pull");
    if (button.disabled) return Promise.resolve(false);
    var err = $("cord-error");
    err.hidden = true;
    var n = ++asked;
    var not = reset ? "The cord was not reset: " : "The cord was not pulled: ";
    var maybe = reset ? "The cord may still have been reset; the board's event stream will show it." :
      "The cord may still have been pulled; the board's event stream will show it.";
    var label = button.textContent;
    var cord = $("cord");
    // A button disabled while it has the focus drops it to the document,
    // where a screen reader loses its place: it is left to the cord.
    var focused = document.activeElement === button;
    button.disabled = true;
    button.textContent = reset ? "Resetting the cord\u2026" : "Pulling the cord\u2026";
    if (focused) cord.focus();
    var abort = window.AbortController ? new AbortController() : null;
    var late = false;
    var limit = abort ? setTimeout(function () { late = true; abort.abort(); },
      Number(cord.getAttribute("data-limit")) || cordLimit) : null;
    function show(text) {
      err.textContent = text;
      err.hidden = false;
      return false;
    }
    function unanswered(e) {
      return show("The cord did not respond: " + (late ? "the board did not answer in time" : e.message) + ". " + maybe);
    }
    return fetch("api/cord", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Andon-Board": "1" },
      body: JSON.stringify(body),
      signal: abort ? abort.signal : undefined
    }).then(function (r) {
      // An error is {"error": {"code", "message"}}; one from something
      // in front of the board (a proxy's page) may not be JSON at all.
      // Either is an answer: the cord was not pulled (or reset), for the
      // reason it gives. A success whose body cannot be read is taken as
      // no answer.
      return r.json().then(function (j) {
        if (!r.ok) return show(not + ((j && j.error && j.error.message) || r.status + " " + r.statusText));
        if (take(n)) render(j);
        return true;
      }, function (e) {
        if (r.ok) throw e;
        return show(not + r.status + " " + r.statusText);
      });
    }).catch(unanswered).then(function (ok) {
      clearTimeout(limit);
      button.disabled = false;
      button.textContent = label;
      return ok;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var who = $("cord-who");
    try { who.value = localStorage.getItem("andon.who") || ""; } catch (e) { /* storage disabled */ }
    $("cord-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      try { localStorage.setItem("andon.who", who.value); } catch (e) { /* storage disabled */ }
      // The reason is cleared once the board took it; one refused stays
      // in the field, to be corrected rather than typed again.
      postCord({ action: "pull", reason: $("cord-reason").value, who: who.value }).then(function (ok) {
        if (ok) $("cord-reason").value = "";
      });
    });
    $("cord-reset").addEventListener("click", function () { postCord({ action: "reset" }); });
    poll();
    share();
    setInterval(tick, 1000);
  });
})();
