// deployhook console: follows a running job's live log.
//
// The job page renders what the journal holds; this script opens the job's
// event stream (Server-Sent Events), rebuilds the steps from it, appends each
// line to its step as it arrives, shows the running step's elapsed time, and
// reloads into the final page when the job ends. A "reset" event (a
// reconnect that landed on a replica whose stream cannot resume where the
// last one stopped) clears the steps: the events after it replay the job.
// A job that was final when
// the page was made (data-final: its post-deploy watch runs) is followed
// until the watch's end, which updates the page in place: the watch is its
// last step, and the end's state is the job's (a success, or a failure after
// the watch rolled it back). It builds the page with
// textContent only (never HTML from the stream), and is served as a file so
// that the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  var steps = document.getElementById("steps");
  if (!steps || !steps.dataset.events || typeof EventSource === "undefined") {
    return;
  }
  var note = document.getElementById("live-note");
  // The browser's clock minus the server's, so that elapsed times use the
  // server's step start times.
  var skew = Date.now() - Number(steps.dataset.now || Date.now());
  var final = steps.dataset.final || "";
  var rebuilt = false;
  var sections = {};
  var running = null; // {meta: element, start: ms on the server's clock}
  var ticker = null;

  function say(text) {
    if (note) {
      note.textContent = text;
    }
  }

  function elem(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) {
      e.className = cls;
    }
    if (text !== undefined) {
      e.textContent = text;
    }
    return e;
  }

  // section returns step seq's section, made on first use.
  function section(seq, name) {
    var s = sections[seq];
    if (s) {
      if (name) {
        s.name.textContent = name;
      }
      return s;
    }
    var el = elem("section", "step");
    el.dataset.seq = seq;
    var h = elem("h3");
    var nameEl = elem("span", "name", name || "step " + seq);
    var meta = elem("span", "meta muted", "");
    h.appendChild(elem("span", "seq", String(seq)));
    h.appendChild(document.createTextNode(" "));
    h.appendChild(nameEl);
    h.appendChild(document.createTextNode(" "));
    h.appendChild(meta);
    var pre = elem("pre");
    pre.hidden = true;
    el.appendChild(h);
    el.appendChild(pre);
    steps.appendChild(el);
    s = {el: el, name: nameEl, meta: meta, pre: pre};
    sections[seq] = s;
    return s;
  }

  function seconds(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    return s < 60 ? s + "s" : Math.floor(s / 60) + "m" + (s % 60) + "s";
  }

  function tick() {
    if (running) {
      running.meta.textContent = "running · " + seconds(Date.now() - skew - running.start);
    }
  }

  function data(e) {
    try {
      return JSON.parse(e.data);
    } catch (err) {
      return null;
    }
  }

  // The first event of the stream replaces the page's steps: the stream
  // starts at the job's first event, and a reconnect resumes after the last.
  function rebuild() {
    if (!rebuilt) {
      rebuilt = true;
      steps.textContent = "";
      liveNote();
      ticker = window.setInterval(tick, 1000);
    }
  }

  var source = new EventSource(steps.dataset.events);

  // liveNote says the page is live again after a reconnect.
  function liveNote() {
    say(final ? "Live: the watch's checks appear as they run." : "Live: lines appear as the VM prints them.");
  }

  source.addEventListener("open", function () {
    if (rebuilt) {
      liveNote();
    }
  });

  source.addEventListener("reset", function () {
    rebuild();
    steps.textContent = "";
    sections = {};
    running = null;
  });

  source.addEventListener("step", function (e) {
    var ev = data(e);
    if (!ev) {
      return;
    }
    rebuild();
    var s = section(ev.step, ev.name);
    s.el.classList.add("live");
    running = {meta: s.meta, start: Date.parse(ev.time)};
    tick();
  });

  source.addEventListener("line", function (e) {
    var ev = data(e);
    if (!ev) {
      return;
    }
    rebuild();
    var s = section(ev.step);
    s.pre.hidden = false;
    var atBottom = s.pre.scrollTop + s.pre.clientHeight >= s.pre.scrollHeight - 4;
    s.pre.appendChild(document.createTextNode(ev.line + "\n"));
    if (atBottom) {
      s.pre.scrollTop = s.pre.scrollHeight;
    }
  });

  source.addEventListener("done", function (e) {
    var ev = data(e);
    if (!ev) {
      return;
    }
    rebuild();
    var s = section(ev.step);
    s.el.classList.remove("live");
    s.meta.textContent = "exit " + (ev.exit || 0) + " · " + seconds(ev.ms || 0);
    if (running && running.meta === s.meta) {
      running = null;
    }
  });

  source.addEventListener("end", function (e) {
    var ev = data(e) || {};
    source.close();
    if (ticker !== null) {
      window.clearInterval(ticker);
    }
    running = null;
    if (ev.state === "queued" || ev.state === "running") {
      // A server from before journal tailing: another process runs it.
      say("This deploy runs elsewhere: reload to see progress.");
      return;
    }
    if (final) {
      // A reload would find the page of a final job again: show the end here.
      showEnd(ev);
      say(rebuilt ? "The post-deploy watch has ended." : "The post-deploy watch has ended: reload to see its checks.");
      return;
    }
    window.location.reload();
  });

  // showEnd puts the state and description of the job's end in the heading.
  function showEnd(ev) {
    var state = document.querySelector("h1 .state");
    if (state && ev.state) {
      state.className = "state " + ev.state;
      state.textContent = ev.state;
    }
    var desc = document.getElementById("description");
    if (desc && ev.description) {
      desc.textContent = ev.description;
      desc.hidden = false;
    }
  }

  source.addEventListener("error", function () {
    // EventSource reconnects by itself, resuming after the last event id;
    // it gives up only when the server refuses (signed out, gone).
    if (source.readyState === EventSource.CLOSED) {
      say("The live log stopped: reload to see progress.");
    } else {
      say("Reconnecting to the live log…");
    }
  });
})();
