// Types of tools/check-layers.mjs for the tests that import it (test/tools/check-layers.test.ts).
export interface Room {
  room: string;
  rank: number;
  paths: string[];
  allow: string[];
  types?: string[];
  pure?: boolean;
  clockFree?: boolean;
  adapter?: boolean;
  usedBy?: string[];
  why: string;
}
export interface Exception {
  from: string;
  to: string;
  why: string;
}
export interface Edge {
  to: string;
  toRoom: string | undefined;
  external?: boolean;
  line: number;
  typeOnly: boolean;
  kind: string;
}
export interface GraphNode {
  rel: string;
  room: Room | undefined;
  edges: Edge[];
  clock: { line: number; what: string }[];
}
export const ROOMS: Room[];
export const EXCEPTIONS: Exception[];
export const PURE_EXTERNALS: string[];
export function roomOf(rel: string, rooms?: Room[]): Room | undefined;
export function checkLayers(
  root: string,
  opts?: { rooms?: Room[]; exceptions?: Exception[] },
): { problems: string[]; warnings: string[]; nodes: Map<string, GraphNode> };
