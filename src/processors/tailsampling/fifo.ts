// Insertion-ordered queues for the processor's "oldest first" questions. A JS Map answers them
// with keys().next(), but V8 leaves a hole for every deleted entry until the table is rebuilt, and
// finding the first live entry walks them: with entries deleted at the front all the time (traces
// decided oldest first) that walk grew with the table and took a quarter of the processor's CPU.
// Here removal is lazy: the caller says which items are still live, dead ones are dropped when
// they reach the front, and the array is compacted as the front advances.

export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  constructor(private readonly isLive: (item: T) => boolean) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** Slots in use, dead ones before the front included (for tests). */
  get slots(): number {
    return this.items.length;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest live item, or undefined. */
  first(): T | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head]!;
      if (this.isLive(item)) {
        this.trimFront();
        return item;
      }
      this.items[this.head++] = undefined;
    }
    this.items = [];
    this.head = 0;
    return undefined;
  }

  /** Removes the oldest item (after first() returned it). */
  shift(): void {
    this.items[this.head++] = undefined;
    this.trimFront();
  }

  /** Gives back the slots before the front once they are most of the array. */
  private trimFront(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Live items, oldest first, while `visit` returns true. */
  forEachWhile(visit: (item: T) => boolean): void {
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]!;
      if (this.isLive(item) && !visit(item)) return;
    }
  }

  /** Drops dead items everywhere when the queue holds more than `limit` (items pushed again on use pile up otherwise). */
  compactAbove(limit: number): void {
    if (this.length <= limit) return;
    this.items = this.items.slice(this.head).filter((item) => this.isLive(item!));
    this.head = 0;
  }
}
