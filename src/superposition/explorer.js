// The model explorer's one hand-written part: it decodes the weights that explorer.py wrote
// (one data script per experiment, loaded when a reader first picks it) and puts one model
// into the Bokeh data sources; Bokeh draws, links the views and shows the hovers.
// explorer.py's `document()` calls start() when the page is ready and changed() when a
// control changes. Reading the address: ?experiment=NAME&p=P&seed=S (see explorer.link),
// &grid=capacity for B shown as the capacity grid's D40, and &threshold=T for the measure
// view's threshold (one of analysis.FVE_THRESHOLDS; without it, analysis.FVE_COMPUTED).
// It never fails silently: a data script that is missing, does not run or holds data that
// cannot be a model (checked before anything is drawn) leaves the views empty and says why in
// the status line; an address asking for what the explorer lacks draws what it falls back to
// and says so; text from the address, a data script or an error is shown as text, not HTML.
(function () {
  "use strict";
  const base = document.currentScript.src.replace(/[^/]*$/, "");
  // explorer.py's constants arrive with settings.js: the int16 step, the graph's edge
  // threshold, the smallest weight the stack plot draws, the sign colours, the neuron fills,
  // the colour of a computed side.
  let STEPS, EDGE, MIN_BLOCK, POSITIVE, NEGATIVE, KIND_FILL, COMPUTED;
  const MENUS = ["experiment", "profile", "width", "p", "seed", "threshold"];
  const KIND = ["monosemantic", "polysemantic", "dead"]; // explorer.py's "kind" codes
  const GAP = 0.04; // edges stop this far from the nodes (the layers are 1 apart)
  const X = { data: {}, cfg: null, updating: false, state: null, shown: {}, registered: {},
    failures: {} };
  window.SuperpositionExplorer = X;
  const file = (name) => base + encodeURIComponent(name) + ".js"; // an experiment's data script

  // Text from the address, a data script or an error message, made safe to write into the
  // status lines (Bokeh Divs, whose text is HTML).
  const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  // The page's notice (explorer.py's START): told once a model is drawn or the status line
  // says why not, so that it hides its "Loading the explorer…".
  const started = () => {
    if (window.SuperpositionExplorerStart) window.SuperpositionExplorerStart.started();
  };

  // A data script that throws as it runs (cut short, say): its error, for the status line.
  window.addEventListener("error", (event) => {
    const src = event.filename;
    if (src && src.startsWith(base)) X.failures[src] = event.message;
  });

  X.settings = (cfg) => {
    X.cfg = cfg;
    ({ steps: STEPS, edge: EDGE, minBlock: MIN_BLOCK, positive: POSITIVE, negative: NEGATIVE,
      kindFill: KIND_FILL, computedColor: COMPUTED } = cfg.constants);
    prefetch();
  };
  // A data script registers its experiment's data; what a script registers under another
  // experiment's name is noted (for the status line), not kept.
  X.register = (d) => {
    const src = document.currentScript ? document.currentScript.src : null;
    const name = d && typeof d.name === "string" ? d.name : null;
    if (src) X.registered[src] = name;
    if (name !== null && (!src || src === file(name))) X.data[name] = d;
  };

  const loading = {};
  function load(name) {
    if (!loading[name]) {
      loading[name] = request(name).catch((error) => { delete loading[name]; throw error; });
    }
    return loading[name];
  }

  function request(name) {
    return new Promise((resolve, reject) => {
      if (X.data[name]) return resolve(X.data[name]);
      const tag = document.createElement("script");
      const plain = `its data file ${name}.js`;
      tag.src = file(name);
      tag.onload = () => {
        if (X.data[name]) return resolve(X.data[name]);
        const error = X.failures[tag.src], other = X.registered[tag.src];
        reject(new Error(error !== undefined ? `${plain} is damaged: it did not run (${error})`
          : other !== undefined ? `${plain} holds another experiment's data (${other})`
            : `${plain} is damaged: it holds no model`));
      };
      tag.onerror = () => reject(new Error(`${plain} could not be loaded (it is missing from ` +
        "the site, or the connection failed)"));
      document.head.appendChild(tag);
    });
  }

  function decode(b64, Type) {
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  // An Error saying, in words, what is wrong with the data script of experiment `name`.
  const damaged = (name, what) => new Error(`its data file ${name}.js is damaged: ${what}`);

  // The arrays of `d` (checked by `check`), decoded, each as long as the shapes it declares
  // need: [key, field in the data, type, values per model].
  function arrays(d) {
    if (!d.arrays) {
      const I = d.instances.length, m = d.m, n = d.n;
      const fields = [["W1", "W1", Int16Array, m * n], ["W2", "W2", Int16Array, n * m],
        ["scale", "scale", Float32Array, m], ["b", "b", Float32Array, n],
        ["order", "order", Int16Array, m], ["eff", "eff", Float32Array, m],
        ["kind", "kind", Uint8Array, m], ["sup", "sup", Float32Array, n],
        ["negative", "fve_negative", Float32Array, n],
        ["positive", "fve_positive", Float32Array, n],
        ["presence", "fve_presence", Float32Array, n]];
      const A = {};
      for (const [key, field, Type, each] of fields) {
        let values;
        try {
          values = decode(d[field], Type);
        } catch (error) {
          throw damaged(d.name, `its ${field} cannot be read as numbers (${error.message})`);
        }
        if (values.length !== I * each) {
          throw damaged(d.name, `its ${field} holds ${values.length} numbers, not the ` +
            `${I * each} its ${I} models need`);
        }
        A[key] = values;
      }
      d.arrays = A;
    }
    return d.arrays;
  }

  // Throws (in words) if experiment `name`'s data `d` cannot be drawn: another experiment's
  // (its shapes, sparsities or seeds are not those settings.js gives `name`), a list of models
  // or a field that is not what the drawing reads, arrays of the wrong length.
  function check(name, d) {
    const bad = (what) => { throw damaged(name, what); };
    const e = meta(name), finite = Number.isFinite;
    if (!d || typeof d !== "object" || !e) bad("it holds no model");
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const differ = ["name", "n", "m", "probs", "seeds"].filter((key) => !same(d[key], e[key]));
    if (differ.length) {
      throw new Error(`its data file ${name}.js holds another experiment's data (its ` +
        `${differ.join(", ")} ${differ.length > 1 ? "are" : "is"} not ${e.label}'s)`);
    }
    const I = Array.isArray(d.instances) ? d.instances.length : 0;
    if (!I || !d.instances.every((i) => i && d.probs.some((p) => sameP(p, i.p)) &&
        d.seeds.includes(i.seed) && finite(i.loss))) {
      bad("its list of models is empty or names a p, a seed or a loss it cannot have");
    }
    if (!Array.isArray(d.w2_step) || d.w2_step.length !== I ||
        !d.w2_step.every((s) => finite(s) && s > 0)) {
      bad(`its w2_step is not ${I} positive numbers, one per model`);
    }
    if (!Array.isArray(d.colors) || d.colors.length !== d.n ||
        !d.colors.every((c) => /^#[0-9a-f]{6}$/i.test(c))) {
      bad(`its colors are not ${d.n} colours, one per feature`);
    }
    if (typeof d.label !== "string" || typeof d.title !== "string" || !finite(d.decay)) {
      bad("its label, title or importance decay is missing");
    }
    if (d.reported !== undefined && !(Array.isArray(d.reported) && d.reported.every((r) =>
      r && typeof r.experiment === "string" && finite(r.p) && Number.isInteger(r.seed) &&
        typeof r.start === "string" && finite(r.loss)))) {
      bad("its list of the models the capacity chapter reports is not one");
    }
    if (d.starts !== undefined && !(d.starts && typeof d.starts === "object" &&
        d.seeds.every((s) => typeof d.starts[s] === "string"))) {
      bad("its list of the starts of its seeds is not one");
    }
    arrays(d);
  }

  // Throws (in words) if model k of `d` (checked) cannot be drawn: values that are not
  // numbers, a neuron order that is not one, a neuron kind that is none of the three.
  function checkModel(d, k) {
    const A = arrays(d), n = d.n, m = d.m;
    const slice = (values, each) => Array.from(values.subarray(k * each, (k + 1) * each));
    for (const [key, field, each] of [["scale", "scale", m], ["b", "b", n], ["eff", "eff", m],
      ["sup", "sup", n], ["negative", "fve_negative", n], ["positive", "fve_positive", n],
      ["presence", "fve_presence", n]]) {
      if (!slice(A[key], each).every(Number.isFinite)) {
        throw damaged(d.name, `its ${field} of this model holds values that are not numbers ` +
          "(NaN or infinite)");
      }
    }
    const order = slice(A.order, m);
    if (new Set(order).size !== m || !order.every((j) => j >= 0 && j < m)) {
      throw damaged(d.name, `its order of this model is not an order of its ${m} neurons`);
    }
    if (!slice(A.kind, m).every((c) => c < KIND.length)) {
      throw damaged(d.name, "its kind of this model names a kind of neuron there is not");
    }
  }

  const family = () => X.cfg.capacity;
  const inFamily = (name) => family().find((c) => c.name === name);
  const seeds = () => X.cfg.capacitySeeds;
  const seedRange = () => `${seeds()[0]}–${seeds()[seeds().length - 1]}`; // contiguous
  const widths = (profile) => family().filter((c) => c.profile === profile)
    .map((c) => c.m).sort((a, b) => a - b).map(String);
  const meta = (name) => X.cfg.catalogue.find((e) => e.name === name);
  const sameP = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  // The seed a model is drawn at when no seed carries over: the lowest-loss one at p, or in
  // the capacity grid the lowest-loss of the grid's seeds (the capacity chapter's model; B,
  // the grid's D40, has more seeds).
  // (Null if `d` has no model at p: `draw` says so.)
  const bestSeed = (d, p, grid) => {
    const at = d.instances.filter((i) => sameP(i.p, p));
    return (at.find((i) => (grid ? i.grid_best : i.best)) ?? at[0] ?? { seed: null }).seed;
  };
  // Whether the model is shown as a cell of the capacity grid: a capacity experiment, or B
  // reached through the grid's menus or a grid address.
  const inGrid = (args, st) => Boolean(inFamily(st.name)) &&
    (!X.cfg.standalone.includes(st.name) || args.experiment.value === "capacity" || st.grid);

  // The model the address asks for, or the default one (the sparsity chapter's). `notes`:
  // what the address asked for that the explorer does not have, and what it shows instead
  // (as text: `describe` escapes them).
  function fromAddress() {
    const q = new URLSearchParams(window.location.search);
    const [name0, p0] = X.cfg.default;
    const notes = [];
    const asked = (key) => {
      const value = q.get(key);
      return `${key} “${value.length > 80 ? value.slice(0, 80) + "…" : value}”`;
    };
    const name = meta(q.get("experiment")) ? q.get("experiment") : name0;
    const e = meta(name);
    const own = name === q.get("experiment"); // p and seed are asked of this experiment
    if (q.has("experiment") && !own) {
      notes.push(`${asked("experiment")}, which it does not have: showing ${e.label} instead`);
    }
    const found = e.probs.find((v) => sameP(v, parseFloat(q.get("p"))));
    const p = found ?? (name === name0 ? p0 : e.probs[0]);
    if (q.has("p") && own && found === undefined) {
      notes.push(`${asked("p")}, at which ${e.label} was not trained: showing p = ${p} instead`);
    }
    const seed = e.seeds.includes(parseInt(q.get("seed"), 10)) ? parseInt(q.get("seed"), 10) : null;
    if (q.has("seed") && own && seed === null) {
      notes.push(`${asked("seed")}, which ${e.label} does not have: showing the seed the book ` +
        "draws instead");
    }
    const F = X.cfg.fve;
    const chosen = F.thresholds.find((t) => sameP(t, parseFloat(q.get("threshold"))));
    const threshold = chosen ?? F.computed;
    if (q.has("threshold") && chosen === undefined) {
      notes.push(`${asked("threshold")}, not one of ${F.thresholds.join(", ")}: showing ` +
        `${threshold} instead`);
    }
    return { name, p, seed, threshold, grid: q.get("grid") === "capacity", notes };
  }

  // `d`: the model's data, or (where they cannot be drawn) its entry in the catalogue.
  function setControls(args, st, d) {
    X.updating = true;
    try {
      // B is both an experiment of its own and the capacity grid's D40.
      const own = X.cfg.standalone;
      const cap = inGrid(args, st);
      const options = X.cfg.catalogue.filter((e) => own.includes(e.name))
        .map((e) => [e.name, `${e.label}: ${e.title.replace(/ \(.*\)$/, "")}`]);
      options.push(["capacity", "D, E: capacity (importance × width)"]);
      args.experiment.options = options;
      args.experiment.value = cap ? "capacity" : st.name;
      args.profile.options = [["decay", "I = 0.8^i"], ["equal", "equal"]];
      const c = inFamily(st.name);
      if (cap) {
        // each profile has its own three widths
        args.width.options = widths(c.profile);
        args.width.value = String(c.m);
        args.profile.value = c.profile;
      }
      args.width.visible = args.profile.visible = Boolean(cap);
      args.p.options = d.probs.map(String);
      args.p.value = String(st.p);
      // the lowest-loss seed; for B in the grid also the lowest-loss of the grid's seeds;
      // a constructed experiment's seeds by their starts; the capacity chapter's model
      const best = d.starts || !d.instances ? null : bestSeed(d, st.p, false);
      const gridBest = cap && own.includes(st.name) && d.instances ? bestSeed(d, st.p, true)
        : null;
      const r = reported(args, d, st.p);
      const chosen = r && r.experiment === d.name ? r.seed : null;
      args.seed.options = d.seeds.map((s) => {
        const marks = [d.starts ? d.starts[s] : null, s === best ? "lowest loss"
          : s === gridBest ? `lowest of ${seedRange()}` : null, s === chosen ? "reported" : null]
          .filter(Boolean);
        return [String(s), marks.length ? `${s} (${marks.join(", ")})` : String(s)];
      });
      args.seed.value = String(st.seed ?? d.seeds[0]);
      args.threshold.options = X.cfg.fve.thresholds.map(String);
      args.threshold.value = String(st.threshold);
    } finally {
      X.updating = false;
      // BokehJS runs the menus' callbacks (ES modules) later, once `updating` is false again:
      // what they report then is the value set here, not a reader's choice.
      X.shown = Object.fromEntries(MENUS.map((name) => [name, args[name].value]));
    }
  }

  function draw(args, d, st) {
    const A = arrays(d), n = d.n, m = d.m;
    const k = d.instances.findIndex((i) => sameP(i.p, st.p) && i.seed === st.seed);
    if (k < 0) throw damaged(d.name, `it has no model at p = ${st.p}, seed ${st.seed}`);
    checkModel(d, k); // before anything is drawn
    const inst = d.instances[k];
    const order = Array.from(A.order.subarray(k * m, (k + 1) * m));
    const scale = (j) => A.scale[k * m + j];
    const w1 = (j, i) => A.W1[(k * m + j) * n + i] / STEPS;
    const raw2 = (i, j) => A.W2[(k * n + i) * m + j] * d.w2_step[k]; // as the file holds it
    const w2 = (i, j) => raw2(i, j) * scale(j); // rescaled
    const kind = (j) => A.kind[k * m + j];

    const cells = { x: [], y: [], w: [], raw: [], w2: [], raw2: [], neuron: [], feature: [] };
    const seg = { x: [], bottom: [], top: [], color: [], neuron: [], feature: [], w: [], raw: [] };
    let high = 1, low = 0;
    order.forEach((j, r) => {
      let up = 0, down = 0;
      for (let i = 0; i < n; i++) {
        const w = w1(j, i);
        cells.x.push(i); cells.y.push(r); cells.w.push(w); cells.raw.push(w * scale(j));
        cells.w2.push(w2(i, j)); cells.raw2.push(raw2(i, j));
        cells.neuron.push(j); cells.feature.push(i);
        if (Math.abs(w) <= MIN_BLOCK) continue;
        const [b, t] = w > 0 ? [up, up + w] : [down + w, down];
        if (w > 0) up += w; else down += w;
        seg.x.push(r); seg.bottom.push(b); seg.top.push(t); seg.color.push(d.colors[i]);
        seg.neuron.push(j); seg.feature.push(i); seg.w.push(w); seg.raw.push(w * scale(j));
      }
      high = Math.max(high, up); low = Math.min(low, down);
    });

    const spread = (count) => (rank) => -(rank - (count - 1) / 2) / Math.max(1, count - 1);
    const gy = order.map((_, r) => spread(m)(r));
    const rankOf = new Map(order.map((j, r) => [j, r]));
    const reads = [], writes = [];
    for (let i = 0; i < n; i++) {
      if (order.some((j) => Math.abs(w1(j, i)) > EDGE)) reads.push(i);
      if (order.some((j) => Math.abs(w2(i, j)) > EDGE)) writes.push(i);
    }
    const yIn = new Map(reads.map((i, r) => [i, spread(reads.length)(r)]));
    const yOut = new Map(writes.map((i, r) => [i, spread(writes.length)(r)]));
    const edges = { x0: [], y0: [], x1: [], y1: [], color: [], width: [], neuron: [], feature: [],
      w: [], raw: [], matrix: [] };
    // Edges stop short of the nodes, so hovering a node shows the node, not every edge at it.
    const edge = (x0, y0, x1, y1, w, raw, j, i, matrix) => {
      const gap = GAP * (y1 - y0);
      edges.x0.push(x0 + GAP); edges.y0.push(y0 + gap); edges.x1.push(x1 - GAP);
      edges.y1.push(y1 - gap);
      edges.color.push(w > 0 ? POSITIVE : NEGATIVE); edges.width.push(Math.min(4, 2 * Math.abs(w)));
      edges.neuron.push(j); edges.feature.push(i); edges.w.push(w); edges.raw.push(raw);
      edges.matrix.push(matrix);
    };
    for (const j of order) {
      const y = gy[rankOf.get(j)];
      for (const i of reads) if (Math.abs(w1(j, i)) > EDGE)
        edge(0, yIn.get(i), 1, y, w1(j, i), w1(j, i) * scale(j), j, i, `W1: feature x${i} → neuron h${j}`);
      for (const i of writes) if (Math.abs(w2(i, j)) > EDGE)
        edge(1, y, 2, yOut.get(i), w2(i, j), raw2(i, j), j, i, `W2: neuron h${j} → output y${i}`);
    }
    const nodes = { x: [], y: [], color: [], label: [], feature: [], what: [] };
    const node = (x, y, i, label, what, value) => {
      nodes.x.push(x); nodes.y.push(y); nodes.color.push(d.colors[i]); nodes.label.push(label);
      nodes.feature.push(i); nodes.what.push(`${what} = ${value.toFixed(4)}`);
    };
    for (const i of reads) node(0, yIn.get(i), i, `input x${i}`, "superposition", A.sup[k * n + i]);
    for (const i of writes) node(2, yOut.get(i), i, `output y${i}`, "bias b", A.b[k * n + i]);

    // A feature no neuron reads (every |W1| at most MIN_BLOCK, as in the stack plot) has no
    // direction to share: its measured superposition is that of noise, so no bar is drawn.
    const sup = { x: [], top: [], feature: [], importance: [], note: [] };
    for (let i = 0; i < n; i++) {
      const read = order.some((j) => Math.abs(w1(j, i)) > MIN_BLOCK);
      sup.x.push(i); sup.top.push(read ? A.sup[k * n + i] : 0); sup.feature.push(i);
      sup.importance.push(Math.pow(d.decay, i));
      sup.note.push(read ? "" : `no neuron reads it (every |W1| ≤ ${MIN_BLOCK}): not drawn`);
    }
    const poly = { x: [], top: [], neuron: [], kind: [], color: [] };
    const neurons = { rank: [], neuron: [], mx: [], mw: [], sy: [], sh: [], gy: [], fill: [],
      eff: [], kind: [] };
    order.forEach((j, r) => {
      const e = A.eff[k * m + j];
      poly.x.push(r); poly.top.push(e); poly.neuron.push(j); poly.kind.push(KIND[kind(j)]);
      poly.color.push(KIND_FILL[kind(j)]);
      neurons.rank.push(r); neurons.neuron.push(j); neurons.mx.push((n - 1) / 2);
      neurons.mw.push(n); neurons.sy.push((high + low) / 2); neurons.sh.push((high - low) * 1.04);
      neurons.gy.push(gy[r]); neurons.fill.push(KIND_FILL[kind(j)]); neurons.eff.push(e);
      neurons.kind.push(KIND[kind(j)]);
    });
    const polyTop = Math.max(2, ...poly.top) * 1.05;  // a tapped neuron's column, full height
    neurons.py = order.map(() => polyTop / 2);
    neurons.ph = order.map(() => polyTop);

    args.neurons.selected.indices = [];
    args.edges.selected.indices = [];
    args.cells.data = cells;
    args.segments.data = seg;
    args.edges.data = edges;
    args.nodes.data = nodes;
    args.superposition.data = sup;
    args.polysemanticity.data = poly;
    args.neurons.data = neurons;
    args.x_features.start = -0.5; args.x_features.end = n - 0.5;
    args.y_ranks.start = m - 0.5; args.y_ranks.end = -0.5;
    args.x_ranks.start = -0.5; args.x_ranks.end = m - 0.5;
    args.value.high = X.cfg.supTop;
    const pad = (high - low) * 0.04;
    args.y_stack.start = low - pad; args.y_stack.end = high + pad;
    args.y_sup.start = 0; args.y_sup.end = Math.max(0.1, ...sup.top) * 1.05;
    args.y_poly.start = 0; args.y_poly.end = polyTop;

    const swatch = (c, label) =>
      `<span style="white-space:nowrap;margin-right:0.7em"><span style="display:inline-block;` +
      `width:0.9em;height:0.9em;background:${c};border:1px solid #999;vertical-align:-0.1em">` +
      `</span> ${label}</span> `;
    let key = "<b>Feature colours</b> (stack plot and graph): ";
    for (let i = 0; i < Math.min(n, 10); i++) key += swatch(d.colors[i], `x${i}`);
    if (n > 10) key += swatch(d.colors[10], d.decay < 1 ? "x10+ (grey, lighter: less important)"
      : "x10+ (grey, lighter: later index; all equally important)");
    key += "<br><b>Neurons</b> (bars below, nodes in the graph): " +
      KIND.map((name, t) => swatch(KIND_FILL[t], name)).join("");
    args.key.text = key;
    st.k = k;
    describe(args, d, st);
    drawMeasure(args, d, k, st.threshold);
    X.state = st;
    const root = document.documentElement.dataset;
    root.explorerModel = `${d.name}|${inst.p}|${inst.seed}`;
    root.explorerDrawnMs = String(Math.round(performance.now()));
    delete root.explorerError;
  }

  // A model that cannot be shown: the views emptied (nothing drawn of it, nothing left of the
  // model before), and why in the status line; the menus, filled from the catalogue if this
  // was the first model, still offer every other.
  function fail(args, st, error) {
    const e = meta(st.name);
    for (const source of [args.cells, args.segments, args.edges, args.nodes, args.superposition,
      args.polysemanticity, args.neurons, args.measure, args.measure_features]) {
      source.selected.indices = [];
      source.data = Object.fromEntries(Object.keys(source.data).map((column) => [column, []]));
    }
    args.key.text = args.measure_status.text = "";
    if (!args.experiment.options.length && e) {
      try {
        setControls(args, st, e);
      } catch (_) { /* the status line below says what matters */ }
    }
    const which = [e ? esc(e.label) : null, `p = ${esc(st.p)}`,
      st.seed === null || st.seed === undefined ? null : `seed ${esc(st.seed)}`].filter(Boolean);
    args.status.text = `<b>The explorer could not show this model</b> (${which.join(" · ")}): ` +
      `${esc(error.message)}. Reload the page to try again, or pick another model.`;
    X.state = { ...st, notes: [], failed: true };
    const root = document.documentElement.dataset;
    delete root.explorerModel;
    root.explorerError = error.message;
  }

  // The model the capacity chapter reports for the cell of the model at p (the lowest loss of
  // the cell's random and constructed starts), when the model is shown as one of a cell's: a
  // capacity experiment, B in the grid, or a constructed start. Null otherwise.
  function reported(args, d, p) {
    const asCell = d.starts || !X.cfg.standalone.includes(d.name) ||
      args.experiment.value === "capacity";
    return (asCell && d.reported && d.reported.find((r) => sameP(r.p, p))) || null;
  }

  // The status line: the model, its place in the book, its loss and its neurons.
  function describe(args, d, st) {
    const m = d.m, k = st.k, inst = d.instances[k], kind = arrays(d).kind;
    const counts = [0, 0, 0];
    for (let j = 0; j < m; j++) counts[kind[k * m + j]]++;
    const asD = args.experiment.value === "capacity" && X.cfg.standalone.includes(d.name);
    const r = reported(args, d, inst.p);
    let note = ""; // which chapter draws this model; in a capacity cell, its place there
    if (d.starts) {
      note = ` (a ${esc(d.starts[inst.seed])} start)`;
    } else if (inst.best && !(r && inst.grid_best)) {
      note = ` (the lowest-loss seed at this p, the one the ${asD ? "sparsity chapter" : "book"}` +
        " draws)";
    } else if (r && inst.grid_best) {
      note = ` (the lowest-loss random start${asD ? ` of seeds ${seedRange()}` : ""} at this p)`;
    }
    if (r && r.experiment === d.name && r.seed === inst.seed) {
      note += " · the model the capacity chapter reports for this cell, the lowest-loss of its " +
        "random and constructed starts";
    } else if (r) {
      const q = new URLSearchParams({ experiment: r.experiment, p: r.p, seed: r.seed,
        threshold: st.threshold });
      if (X.cfg.standalone.includes(r.experiment) && inFamily(r.experiment)) {
        q.set("grid", "capacity"); // B as D40
      }
      const which = r.start === "random" ? `seed ${r.seed}` : `${r.start} start`;
      note += " · the capacity chapter reports this cell's " +
        `<a href="?${esc(q)}">${esc(which)}</a> ` +
        `(loss ${r.loss.toPrecision(4)}), the lowest-loss of its random and constructed starts`;
    }
    if (asD) note += ` · the capacity grid's D${m} is this experiment at seeds ${seedRange()}`;
    // what the address asked for that the explorer lacks, and what it shows instead
    const asked = st.notes && st.notes.length ? `<span style="color:#b00020"><b>The address ` +
      `asked for</b> ${st.notes.map(esc).join("; ")}.</span><br>` : "";
    args.status.text = asked + `<b>${esc(d.label)}</b>: ${esc(d.title)} · p = ${inst.p} · ` +
      `seed ${inst.seed}` + note +
      ` · loss ${inst.loss.toPrecision(4)} · of ${m} neurons: ${counts[1]} polysemantic, ` +
      `${counts[0]} monosemantic, ${counts[2]} dead. Hover for exact weights; tap a neuron ` +
      `(a matrix row, a stack column, a bar or a middle node) to mark it in every view.`;
  }

  // The measure view: each side's within-side score (filled where it reaches `threshold`),
  // and above it the features computed, both sides at least the threshold, at every one.
  function drawMeasure(args, d, k, threshold) {
    const A = arrays(d), n = d.n, F = X.cfg.fve;
    const negative = A.negative.subarray(k * n, (k + 1) * n);
    const positive = A.positive.subarray(k * n, (k + 1) * n);
    const reached = (i, t) => (negative[i] >= t) + (positive[i] >= t); // sides, 0 to 2
    const pts = { x: [], y: [], marker: [], fill: [] };
    const features = { x: [], feature: [], negative: [], positive: [], presence: [], what: [] };
    for (let i = 0; i < n; i++) {
      const pair = [[negative[i], -0.2, "inverted_triangle", "negative"],
        [positive[i], 0.2, "triangle", "positive"]];
      const one = pair.filter(([v]) => v >= threshold).map((s) => s[3]);
      const what = one.length === 2 ? `computed at ${threshold}: both sides`
        : `not computed at ${threshold}: ${one.length ? `${one[0]} side only` : "neither side"}`;
      for (const [v, dx, marker] of pair) {
        pts.x.push(i + dx); pts.y.push(Math.max(F.floor, v)); pts.marker.push(marker);
        pts.fill.push(v >= threshold ? COMPUTED : "#ffffff");
      }
      features.x.push(i); features.feature.push(i); features.negative.push(negative[i]);
      features.positive.push(positive[i]); features.presence.push(A.presence[k * n + i]);
      features.what.push(what);
    }
    const count = (t) => {
      let both = 0, sides = 0;
      for (let i = 0; i < n; i++) { sides += reached(i, t); both += reached(i, t) === 2; }
      return [both, sides];
    };
    const [computed, sides] = count(threshold);
    const others = F.thresholds.filter((t) => t !== threshold)
      .map((t) => `${count(t)[0]} at ${t}`).join(", ");
    const mark = (glyph, label) =>
      `<span style="white-space:nowrap"><span style="color:${COMPUTED}">${glyph}</span> ${label}` +
      "</span>";
    args.measure.data = pts;
    args.measure_features.data = features;
    args.threshold_line.location = threshold;
    args.measure_status.text = `Computes <b>${computed}</b> of ${n} features on both sides at ` +
      `${threshold} (${others}); ${sides} of ${2 * n} sides.<br>` +
      `${mark("▼", "x<sub>i</sub> &lt; 0,")} ${mark("▲", "x<sub>i</sub> &gt; 0:")} filled if the ` +
      `side reaches the threshold (the dashed line), ${mark("▽△", "hollow")} if not; 0 or less ` +
      "is drawn at 0.";
    document.documentElement.dataset.explorerThreshold = String(threshold);
  }

  // The address of the model `st`, kept in the page's address bar.
  function remember(args, st) {
    const q = new URLSearchParams({ experiment: st.name, p: st.p, seed: st.seed,
      threshold: st.threshold });
    if (args.experiment.value === "capacity") q.set("grid", "capacity"); // B as D40
    window.history.replaceState(null, "", "?" + q.toString());
  }

  // Each show() takes a ticket; a load that ends after a later choice draws nothing.
  let ticket = 0;
  function show(args, st, address) {
    const mine = ++ticket;
    if (!X.data[st.name]) args.status.text = `Loading <b>${esc(meta(st.name).label)}</b>…`;
    return load(st.name).then((d) => {
      if (mine !== ticket) return;
      if (X.state) st.threshold = X.state.threshold; // chosen while this model loaded
      check(st.name, d);
      if (st.seed === null || !d.seeds.includes(st.seed)) {
        st.seed = bestSeed(d, st.p, inGrid(args, st));
      }
      setControls(args, st, d);
      draw(args, d, st);
      if (address) remember(args, st);
      started();
    }).catch((error) => {
      if (mine !== ticket) return;
      fail(args, st, error);
      started();
      throw error;
    });
  }

  // A tapped neuron: its edges are selected too, so the graph shows them over the rest.
  X.selected = (args) => {
    const rank = args.neurons.selected.indices[0];
    const j = rank === undefined ? null : args.neurons.data.neuron[rank];
    const mine = [];
    args.edges.data.neuron.forEach((n, e) => { if (n === j) mine.push(e); });
    args.edges.selected.indices = mine;
  };

  X.start = (args) => {
    if (!X.cfg) { // settings.js did not run: the page's notice names it
      if (window.SuperpositionExplorerStart) {
        window.SuperpositionExplorerStart.failed("settings.js", "did not give the explorer its " +
          "settings");
      }
      args.status.text = "<b>The explorer could not start</b>: its settings (settings.js) did " +
        "not arrive. Reload the page to try again.";
      document.documentElement.dataset.explorerError = "settings.js did not run";
      return null;
    }
    return show(args, fromAddress(), false);
  };

  // Ask for the address's model now, while the page and Bokeh are still loading: start()
  // finds it registered (or its script on the way; `load` waits for whichever ends first).
  function prefetch() {
    load(fromAddress().name).catch(() => null); // start() reports a failure
  }

  X.changed = (args, which) => {
    if (X.updating || !X.state || args[which].value === X.shown[which]) return;
    X.shown[which] = args[which].value;
    if (which === "threshold") { // the same model: only the measure view changes
      X.state.threshold = parseFloat(args.threshold.value);
      X.state.notes = []; // the reader has chosen: the address's notice is done with
      if (X.state.failed) return; // nothing drawn to measure
      const d = X.data[X.state.name];
      drawMeasure(args, d, X.state.k, X.state.threshold);
      describe(args, d, X.state); // its link to the cell's reported model names the threshold
      remember(args, X.state);
      return;
    }
    let name = args.experiment.value;
    if (name === "capacity") {
      // a width the other profile lacks: this profile's nearest one
      const want = parseInt(args.width.value, 10);
      const gap = (f) => Math.abs(f.m - want);
      const mine = family().filter((f) => f.profile === args.profile.value);
      const c = mine.length ? mine.reduce((a, b) => (gap(b) < gap(a) ? b : a)) : family()[0];
      name = c.name;
    }
    const e = meta(name);
    const p = e.probs.find((v) => sameP(v, parseFloat(args.p.value))) ?? e.probs[0];
    // A chosen seed, or the seed before when only p changed; another model starts at the
    // seed the book draws of it.
    const seed = which === "seed" ? parseInt(args.seed.value, 10)
      : which === "p" && e.seeds.includes(X.state.seed) ? X.state.seed : null;
    show(args, { name, p, seed }, true);
  };
})();
