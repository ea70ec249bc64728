// ANSI SGR colours in console lines, as text spans: the line's characters are only ever text.

const CSI = /\x1b\[([0-9;]*)m/g;
// Other escape sequences (cursor moves, titles) are dropped.
const OTHER = /\x1b(\[[0-9;?]*[A-Za-ln-z]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Z0-9])/g;

function apply(state, codes) {
  const list = codes === "" ? [0] : codes.split(";").map((c) => Number(c) || 0);
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === 0) { state.fg = null; state.bg = null; state.bold = false; state.underline = false; }
    else if (c === 1) state.bold = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) state.bold = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = c - 30;
    else if (c >= 90 && c <= 97) state.fg = c - 90 + 8;
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = c - 40;
    else if (c >= 100 && c <= 107) state.bg = c - 100 + 8;
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && list[i + 1] === 5) {
      // 256 colours: the first 16 map to the palette, the rest are left plain.
      const n = list[i + 2];
      if (n < 16) { if (c === 38) state.fg = n; else state.bg = n; }
      i += 2;
    } else if ((c === 38 || c === 48) && list[i + 1] === 2) {
      i += 4;
    }
  }
}

// The spans of one line; `state` carries colours over from line to line, as terminals do.
export function render(line, state) {
  const out = document.createElement("div");
  out.className = "line";
  const clean = line.replace(OTHER, "");
  let last = 0;
  const push = (text) => {
    if (!text) return;
    if (state.fg === null && state.bg === null && !state.bold && !state.underline) {
      out.append(text);
      return;
    }
    const span = document.createElement("span");
    const classes = [];
    if (state.fg !== null) classes.push(`fg${state.fg}`);
    if (state.bg !== null) classes.push(`bg${state.bg}`);
    if (state.bold) classes.push("b");
    if (state.underline) classes.push("u");
    span.className = classes.join(" ");
    span.textContent = text;
    out.append(span);
  };
  for (const m of clean.matchAll(CSI)) {
    push(clean.slice(last, m.index));
    apply(state, m[1]);
    last = m.index + m[0].length;
  }
  push(clean.slice(last));
  if (!out.firstChild) out.append("\u200b");
  return out;
}

export function freshState() {
  return { fg: null, bg: null, bold: false, underline: false };
}
