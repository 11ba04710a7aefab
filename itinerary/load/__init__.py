"""`itinerary load`: an open-loop load tool for a running deployment (see docs/loadtest.md).

schedule.py  rate schedules and when each batch is due (pure)
traffic.py   profiles (uniform or Zipf), journeys' trigger sequences, fast XDM encoding
stats.py     HdrHistogram latencies, per-second timelines, merging across processes
sender.py    the open-loop and closed-loop senders over HTTP
receiver.py  the demo channels' receivers, timing event-to-delivery latency
report.py    the final tables, the JSON report and the PNG chart
main.py      orchestration: sender processes, live progress, drain, report
"""
