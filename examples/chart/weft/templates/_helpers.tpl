{{/* net-conf.json, from podCidr, podCidrv6 and flannel's backend values. */}}
{{- define "weft.netConf" -}}
{{- $f := .Values.flannel -}}
{{- $backend := dict "Type" $f.backend -}}
{{- with $f.backendPort }}{{ $_ := set $backend "Port" (int .) }}{{ end -}}
{{- with $f.vni }}{{ $_ := set $backend "VNI" (int .) }}{{ end -}}
{{- with $f.mtu }}{{ $_ := set $backend "MTU" (int .) }}{{ end -}}
{{- if $f.GBP }}{{ $_ := set $backend "GBP" true }}{{ end -}}
{{- if $f.directRouting }}{{ $_ := set $backend "DirectRouting" true }}{{ end -}}
{{- $conf := dict "Backend" $backend -}}
{{- if .Values.podCidr }}{{ $_ := set $conf "Network" .Values.podCidr }}{{ else }}{{ $_ := set $conf "EnableIPv4" false }}{{ end -}}
{{- if .Values.podCidrv6 }}{{ $_ := set $conf "EnableIPv6" true }}{{ $_ := set $conf "IPv6Network" .Values.podCidrv6 }}{{ end -}}
{{- if $f.enableNFTables }}{{ $_ := set $conf "EnableNFTables" true }}{{ end -}}
{{- toPrettyJson $conf }}
{{- end -}}

{{/* The labels of the agent's objects and Pods: kube-flannel.yml's. */}}
{{- define "weft.labels" -}}
app: flannel
k8s-app: flannel
tier: node
{{- end -}}
