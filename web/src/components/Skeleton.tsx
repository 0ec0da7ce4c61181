export function Skeleton({ width = "100%", height = 20 }: { width?: number | string; height?: number }) {
  return <span className="skeleton" style={{ width, height }} aria-hidden data-testid="skeleton" />;
}
