import { render, freshState } from "/assets/ansi.js";

// A console view: lines appended as text, at most `limit` kept (the oldest go), following the
// end unless the reader scrolled up or turned following off. The element's `data-received`
// counts the lines received, and the User Timing mark `console-first-line` notes when the first
// was added to the page.
export class ConsoleView {
  constructor(pre, follow, limit = 5000) {
    this.pre = pre;
    this.follow = follow;
    this.limit = limit;
    this.state = freshState();
    this.pending = [];
    this.scheduled = false;
    this.received = 0;
    // Where the view last put the scroll position itself: a reader scrolling up from there
    // pauses following (however the scroll events of the view's own moves interleave), and
    // scrolling back to the end resumes it.
    this.placedAt = 0;
    pre.addEventListener("scroll", () => {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (atEnd) follow.checked = true;
      else if (follow.checked && pre.scrollTop < this.placedAt - 4) follow.checked = false;
    });
    follow.addEventListener("change", () => { if (follow.checked) this.toEnd(); });
  }

  // Lines are added in batches, once a frame, so a fast console does not redraw per line.
  push(line) {
    this.received += 1;
    this.pending.push(line);
    if (this.pending.length > this.limit) this.pending.splice(0, this.pending.length - this.limit);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = document.createDocumentFragment();
    for (const line of this.pending) batch.append(render(line, this.state));
    this.pending = [];
    this.pre.append(batch);
    if (this.pre.dataset.received === undefined) performance.mark("console-first-line");
    this.pre.dataset.received = this.received;
    const extra = this.pre.childElementCount - this.limit;
    for (let i = 0; i < extra; i++) this.pre.firstElementChild.remove();
    if (this.follow.checked) this.toEnd();
  }

  clear() {
    this.pending = [];
    this.pre.replaceChildren();
    this.state = freshState();
  }

  toEnd() {
    this.pre.scrollTop = this.pre.scrollHeight;
    this.placedAt = this.pre.scrollTop;
  }
}
