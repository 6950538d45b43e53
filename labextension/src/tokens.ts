/** Types of the server API's JSON (docs/server-api.md). */

export interface ICellRef {
  id: string | null;
  number: number;
}

export interface IProblem {
  kind: string;
  message: string;
  cell: number | null;
  cell_id: string | null;
}

export interface IAnalysis {
  path: string;
  ok: boolean;
  name: string | null;
  order: string[];
  stages: {
    name: string;
    cells: ICellRef[];
    inputs: { name: string; from: string }[];
    outputs: string[];
    parameters: string[];
    after: string[];
  }[];
  edges: { from: string; to: string; names: string[] }[];
  parameters: { name: string; type: string; default: unknown }[];
  parameters_cell: ICellRef | null;
  warnings: IProblem[];
  errors: IProblem[];
}

export interface IRun {
  id: string;
  kind: string;
  target: string;
  status: string;
  parameters: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  duration: number | null;
  created_at: number;
  exit_code?: number | null;
  /** The id the server answered when it started the run (when the store's row has another id). */
  launch_id?: string;
  stderr?: string;
  run_dir?: string | null;
  error_cell?: number | null;
  error_cell_id?: string | null;
  error_name?: string | null;
  error_message?: string | null;
  /** Whether `GET runs/ID/notebook` serves an executed notebook for this run (tracked jobs). */
  has_notebook?: boolean;
}

/** A schedule as `GET /nb2pipe/api/schedules?path=` lists it. */
export interface ISchedule {
  name: string;
  kind: string;
  target: string;
  /** The notebook relative to the server root (null outside it). */
  path: string | null;
  cron: string;
  timezone: string;
  parameters: Record<string, unknown>;
  paused: boolean;
  /** The next fire time, ISO-8601 UTC; null while paused. */
  next_fire: string | null;
  last_run: { id: string; status: string; scheduled_for: string | null; created_at: number } | null;
}
